"""Notifications settings: `NOTIFICATIONS_` environment variables, nested with `__`."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import EMBEDDED_SMTP_PORT, ServiceSettings, embedded_database_url


class SmtpSettings(BaseModel):
    """The mail server notifications hands email to."""

    host: str = Field(default="127.0.0.1", description="SMTP host.")
    port: int = Field(default=EMBEDDED_SMTP_PORT, description="SMTP port.")
    username: str | None = Field(default=None, description="SMTP user, if the server asks.")
    password: SecretStr | None = Field(default=None, description="SMTP password.")
    start_tls: bool = Field(default=False, description="Upgrade with STARTTLS (TLS clause).")
    use_tls: bool = Field(default=False, description="Implicit TLS (port 465).")
    ca_file: str | None = Field(
        default=None,
        description="PEM bundle to trust instead of the system's (a private CA); the server's "
        "certificate and host name are always verified (TLS clause).",
    )
    timeout_s: float = Field(default=10.0, description="Per-command timeout.")
    local_hostname: str | None = Field(
        default=None,
        description="The name this host gives in EHLO; by default its fully qualified name.",
    )

    @model_validator(mode="after")
    def _one_tls_mode_and_whole_credentials(self) -> SmtpSettings:
        """STARTTLS or implicit TLS, not both; a user and a password together or neither."""
        if self.start_tls and self.use_tls:
            raise ValueError(
                "SMTP start_tls and use_tls are exclusive: start_tls upgrades a plaintext "
                "connection (usually port 587), use_tls is TLS from the start (usually port 465)"
            )
        has_password = self.password is not None and bool(self.password.get_secret_value())
        if bool(self.username) != has_password:
            missing = (
                "the username has no password" if self.username else "the password has no user"
            )
            raise ValueError(f"SMTP username and password go together: {missing}")
        return self


class NotificationsSettings(ServiceSettings):
    """Where notifications' database, broker and mail server are."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFICATIONS_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field(
        default=embedded_database_url("notifications"), description="Notifications' own database."
    )
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    sender: str = Field(
        default="Quittance <no-reply@quittance.example>", description="From header."
    )
    message_id_domain: str = Field(
        default="quittance.example", description="Right side of Message-IDs."
    )
    invitation_url: str = Field(
        default="http://127.0.0.1:8000/invitations/accept",
        description="Where an invited person accepts (billing's public address).",
    )
    certificate_key_url: str = Field(
        default="http://127.0.0.1:8002/certificates/signing-key.pem",
        description="Where retention publishes the key that verifies purge certificates.",
    )
    resend_after_s: float = Field(
        default=30.0, ge=0.1, description="A queued email this old is retried by the sweeper."
    )
    sweep_interval_s: float = Field(
        default=5.0, ge=0.1, description="How often queued email is retried."
    )
    reminder_interval_s: float = Field(
        default=60.0, ge=0.1, description="How often due payment reminders are looked for."
    )
    concurrent_sends: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Emails handed to the SMTP server at once (each its own connection).",
    )
