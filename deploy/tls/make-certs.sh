#!/bin/sh
# The compose stack's certificates (TLS): a certificate authority made on first start, and a
# certificate for each server under its compose host name, each in a folder of its own that
# only that server mounts (with the CA's certificate beside it). Kept in the `certs` volume;
# delete the volume to make new ones. Production brings certificates of its own CA (deploy/k8s
# expects cert-manager's secrets). Runs in the alpine/openssl image.
set -eu
cd /certs
if [ -f ca/ca.pem ]; then
  echo "certificates exist; keeping them"
  exit 0
fi
mkdir -p ca
openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=Quittance compose CA" \
  -keyout ca.key -out ca/ca.pem -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
for host in kafka postgres billing notifications retention audit ops; do
  mkdir -p "$host"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout key.pem -out request.csr
  printf 'subjectAltName=DNS:%s,DNS:localhost\nextendedKeyUsage=serverAuth\n' "$host" > ext.cnf
  openssl x509 -req -in request.csr -CA ca/ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile ext.cnf -out "$host/server.crt"
  # One PEM file with the key (PKCS#8) and the chain: what Kafka and the services read.
  openssl pkcs8 -topk8 -nocrypt -in key.pem -out "$host/server.key"
  cat "$host/server.key" "$host/server.crt" ca/ca.pem > "$host/server.pem"
  cp ca/ca.pem "$host/ca.pem"
  rm key.pem request.csr ext.cnf
done
mkdir -p prometheus && cp ca/ca.pem prometheus/ca.pem
rm ca.key ca/ca.srl 2>/dev/null || rm -f ca.key ./*.srl
# The services run as uid 10001, PostgreSQL as 999 and Kafka as 1000 (their images).
for host in billing notifications retention audit ops; do chown -R 10001 "$host"; done
chown -R 999:999 postgres
chown -R 1000 kafka
chmod 600 ./*/server.key ./*/server.pem
echo "certificates made"
