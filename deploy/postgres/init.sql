-- One database per service: a service owns its data (ARCHITECTURE rule 1).
CREATE DATABASE billing;
CREATE DATABASE notifications;
CREATE DATABASE retention;
CREATE DATABASE audit;
-- The per-account event keys (TERMINATION): one key store that every service reaches.
CREATE DATABASE keystore;
