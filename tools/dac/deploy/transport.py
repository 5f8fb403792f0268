"""How dac talks to a SIEM: HTTPS with certificate checks, and nothing weaker without saying so.

- Cleartext HTTP sends the bearer token to anyone on the path. It needs the command-line flag
  --allow-insecure-transport: a committed file (`scheme: http`) alone is refused, so a change
  slipped into deploy.yml cannot turn it on.
- Turning certificate checks off (`verify_tls: false` or --insecure) prints a warning on every
  run. The scheduled workflow sets DAC_SCHEDULED=1, and there both are refused: production
  deploys are verified or do not happen.
- A private CA is the right way to trust a self-signed Splunk: `ca_file`.
- Sentinel talks to the documented Azure Resource Manager hosts only, unless the config opts in
  with `allow_custom_arm_endpoint: true` (Azure Stack, a test server).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from .plan import DeployError

SCHEDULED_ENV = "DAC_SCHEDULED"
# https://learn.microsoft.com/azure/azure-resource-manager/management/control-plane-and-data-plane
# (public cloud), .../azure-government/compare-azure-government-global-azure (US Gov),
# .../china/resources-developer-guide (21Vianet)
ARM_HOSTS = ("management.azure.com", "management.usgovcloudapi.net", "management.chinacloudapi.cn")


@dataclass(frozen=True)
class TransportOptions:
    insecure: bool = False                   # --insecure: no certificate checks
    allow_insecure_transport: bool = False   # --allow-insecure-transport: http:// allowed
    scheduled: bool = False                  # running in the scheduled deploy workflow

    @classmethod
    def from_cli(cls, insecure: bool, allow_insecure_transport: bool) -> "TransportOptions":
        return cls(insecure, allow_insecure_transport, os.environ.get(SCHEDULED_ENV, "") not in ("", "0"))


def verify_tls(config_value: bool, options: TransportOptions, url: str, warn: Callable[[str], None]) -> bool:
    """Whether to check certificates; a loud warning (or, scheduled, a refusal) when not."""
    if config_value and not options.insecure:
        return True
    why = "--insecure" if options.insecure else "verify_tls: false"
    if options.scheduled:
        raise DeployError(f"TLS certificate verification is off ({why}) in a scheduled deployment "
                          f"({SCHEDULED_ENV}=1): refused; use ca_file for a private CA; nothing was changed")
    warn(f"WARNING: TLS certificate verification is OFF for {url} ({why}): anyone on the network path can "
         "read the token and change what is deployed. Use ca_file with the server's CA instead.")
    return False


def check_cleartext(url: str, options: TransportOptions, where: str, warn: Callable[[str], None]) -> None:
    """http:// only with the command-line flag, never scheduled, always with a warning."""
    if urlsplit(url).scheme == "https":
        return
    if not options.allow_insecure_transport:
        raise DeployError(f"{where}: {url} is not HTTPS: the token would travel in cleartext; refused "
                          "(only --allow-insecure-transport on the command line allows it); nothing was changed")
    if options.scheduled:
        raise DeployError(f"{where}: cleartext HTTP to {url} in a scheduled deployment ({SCHEDULED_ENV}=1): "
                          "refused; nothing was changed")
    warn(f"WARNING: {url} is plain HTTP (--allow-insecure-transport): the token and every rule travel "
         "in cleartext.")


def check_arm_endpoint(value: str, allow_custom: bool) -> str | None:
    """What is wrong with an `arm_endpoint` value, or None. Scheme is checked by check_cleartext."""
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be a URL like https://management.azure.com"
    if parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"):
        return "must be scheme and host only (no user, path or query)"
    if not allow_custom and (parts.hostname not in ARM_HOSTS or parts.port not in (None, 443)):
        return (f"{parts.hostname} is not an Azure Resource Manager host ({', '.join(ARM_HOSTS)}); "
                "set allow_custom_arm_endpoint: true to use another one")
    return None


def same_origin(url: str, base: str) -> bool:
    """A nextLink must point back to the server we talk to: the token goes with it."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port or 443) == (b.scheme, b.hostname, b.port or 443)
