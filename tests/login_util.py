"""A canfar client configuration for tests (what canfar auth login writes)."""

from __future__ import annotations

from typing import Any


def canfar_config(url: str, grant: dict[str, str], access: str = "expired") -> dict[str, Any]:
    """A canfar v2 configuration (skaha-api.md §11) for the live emulator."""
    return {
        "version": 2,
        "active": {"authentication": "srcnet", "server": "local"},
        "authentication": {
            "srcnet": {
                "mode": "oidc",
                "idp": "srcnet",
                "endpoints": {
                    "discovery": f"{url}/oidc/.well-known/openid-configuration",
                    "token": f"{url}/oidc/token",
                },
                "client": {
                    "identity": grant["client_id"],
                    "secret": grant["client_secret"],
                    "secret_expires_at": 0,
                },
                "token": {
                    "access": access,
                    "refresh": grant["refresh_token"],
                    "token_type": "Bearer",
                    "scope": "openid offline_access",
                },
                "expiry": {"access": 1000.0},
            }
        },
        "servers": {
            "local": {
                "name": "local",
                "idp": "srcnet",
                "uri": "ivo://cadc.nrc.ca/skaha",
                "url": f"{url}/skaha",
                "version": "v1",
                "auths": ["oidc"],
                "storage": {
                    "arc": {"uri": "ivo://cadc.nrc.ca/arc", "url": f"{url}/arc"},
                    "vault": {"uri": "ivo://cadc.nrc.ca/vault", "url": f"{url}/vault"},
                },
            }
        },
    }
