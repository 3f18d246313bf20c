"""Registry credentials: the builder's environment variables, else what `docker login` stored
(config.json auths, credHelpers, credsStore). Side effects: reads files, runs credential helpers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from builder.errors import ConfigError, InputError, ServiceError
from builder.util import read_bounded

_HELPER_TIMEOUT = 15


def credentials_for(host: str) -> tuple[str, str] | None:
    """BUILDER_REGISTRY_USER + BUILDER_REGISTRY_PASSWORD (or _PASSWORD_FILE), else Docker's config."""
    user = os.environ.get("BUILDER_REGISTRY_USER") or None
    # Empty values count as unset: CI systems expand a missing secret to "".
    password = os.environ.get("BUILDER_REGISTRY_PASSWORD") or None
    password_file = os.environ.get("BUILDER_REGISTRY_PASSWORD_FILE") or None
    if password is None and password_file:
        try:  # a regular file of at most 64 KiB: /dev/zero or a FIFO must not hang or eat memory
            data = read_bounded(Path(password_file), 64 << 10, what="password file")
            password = data.decode("utf-8").rstrip("\r\n")
        except ConfigError as exc:
            raise InputError(f"BUILDER_REGISTRY_PASSWORD_FILE {password_file}: {exc.detail}") from None
        except UnicodeDecodeError:
            raise InputError(f"BUILDER_REGISTRY_PASSWORD_FILE {password_file}: not UTF-8 text") from None
    if user and password is not None:
        return user, password
    if user or password is not None:
        raise InputError("set both BUILDER_REGISTRY_USER and BUILDER_REGISTRY_PASSWORD "
                         "(or BUILDER_REGISTRY_PASSWORD_FILE), or neither")
    return docker_config_credentials(host)


def docker_config_credentials(host: str) -> tuple[str, str] | None:
    """What `docker login HOST` stored: credHelpers[host], auths[host], then credsStore."""
    path = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    if not path.exists():
        return None
    try:
        config = json.loads(read_bounded(path, 1 << 20, what="Docker config file"))
    except ConfigError as exc:
        raise InputError(f"{path}: {exc.detail}") from None
    except ValueError:
        raise InputError(f"{path}: not a readable JSON file") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: not a JSON object (Docker writes {{\"auths\": {{...}}}})")
    for key, kind in (("auths", dict), ("credHelpers", dict), ("credsStore", str)):
        if config.get(key) is not None and not isinstance(config[key], kind):
            raise InputError(f"{path}: '{key}' must be {'an object' if kind is dict else 'a string'}")
    helper = (config.get("credHelpers") or {}).get(host)
    if helper is not None and not isinstance(helper, str):
        raise InputError(f"{path}: credHelpers[{host}] must be a string")
    if helper:
        return _from_helper(helper, host, path, required=True)
    for key, entry in (config.get("auths") or {}).items():
        if urlsplit(key if "//" in key else f"//{key}").netloc != host or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            if not isinstance(entry["auth"], str):
                raise InputError(f"{path}: auths[{key}].auth must be a string (base64 of user:password)")
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                sep = ""
            if not sep:
                raise InputError(f"{path}: auths[{key}].auth is not base64 of user:password") from None
            return user, password
        if entry.get("username") and entry.get("password"):
            return entry["username"], entry["password"]
    if config.get("credsStore"):
        return _from_helper(config["credsStore"], host, path, required=False)
    return None


def _from_helper(name: str, host: str, config: Path, required: bool) -> tuple[str, str] | None:
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run([program, "get"], input=host, capture_output=True, text=True,
                              timeout=_HELPER_TIMEOUT)
    except FileNotFoundError:
        if required:
            raise InputError(f"{config}: credential helper {program} (credHelpers[{host}]) is not on PATH") from None
        return None  # a global credsStore that is absent here: no stored credentials
    except subprocess.TimeoutExpired:
        raise ServiceError(f"credential helper {program} did not answer within {_HELPER_TIMEOUT} s") from None
    if done.returncode != 0:
        if "not found" in (done.stdout + done.stderr).lower():
            return None  # the helper has nothing for this host
        raise ServiceError(f"credential helper {program} failed for {host} (exit {done.returncode})")
    try:
        data = json.loads(done.stdout)
        user, secret = str(data["Username"]), str(data["Secret"])
    except (ValueError, KeyError, TypeError):
        raise ServiceError(f"credential helper {program} gave no Username/Secret for {host}") from None
    if user == "<token>":
        raise InputError(f"{program} holds an identity token for {host}, which the builder cannot use: "
                         "set BUILDER_REGISTRY_USER/BUILDER_REGISTRY_PASSWORD (a password or access token)")
    return user, secret
