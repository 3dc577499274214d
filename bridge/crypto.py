"""Encryption of stored secrets (tokens, webhook passwords and secrets) with rotatable Fernet keys."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import ConfigError


def generate_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts with the first configured key and decrypts with any of them, so keys can be rotated:
    put the new key first, run ``bridge keys rotate`` to re-encrypt, then drop the old key."""

    def __init__(self, keys: tuple[str, ...]):
        if not keys:
            raise ConfigError("no encryption key configured (BRIDGE_SECRET_KEY)")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError):
            raise ConfigError(
                "BRIDGE_SECRET_KEY holds a key that is not a Fernet key (32 url-safe base64 bytes); "
                "generate one with `bridge keys generate`") from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError("a stored secret cannot be decrypted with the configured keys "
                              "(was BRIDGE_SECRET_KEY changed without keeping the old key?)") from None

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()
