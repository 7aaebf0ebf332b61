"""Config: environment read at construction, key checks and redaction, URL checks, recovery policy."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import attrs
import pytest

import tinker_recovery
from tinker_recovery import DEFAULT_BASE_URL, Config, Policy, Specific

KEY = "tml-test-Zq8-secret-KEY"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: dict) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}.{b64url(b'sig')}"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.delenv("TINKER_BASE_URL", raising=False)


# --- environment ----------------------------------------------------------------------------------


def test_env_read_at_construction(monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", "tml-first")
    monkeypatch.setenv("TINKER_BASE_URL", "https://one.example")
    first = Config()
    monkeypatch.setenv("TINKER_API_KEY", "tml-second")
    monkeypatch.setenv("TINKER_BASE_URL", "https://two.example/")
    second = Config()
    assert (first.api_key, first.base_url) == ("tml-first", "https://one.example")
    assert (second.api_key, second.base_url) == ("tml-second", "https://two.example")


def test_env_not_read_at_import():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINKER_")}
    code = (
        "import os, tinker_recovery as tr\n"
        "os.environ['TINKER_API_KEY'] = 'tml-set-after-import'\n"
        "os.environ['TINKER_BASE_URL'] = 'https://after.example/'\n"
        "c = tr.Config()\n"
        "print(c.api_key, c.base_url)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["tml-set-after-import", "https://after.example"]


def test_explicit_args_win_over_env(monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", "tml-from-env")
    monkeypatch.setenv("TINKER_BASE_URL", "https://env.example")
    config = Config(api_key=KEY, base_url="https://arg.example")
    assert config.api_key == KEY
    assert config.base_url == "https://arg.example"


def test_none_means_use_env(monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", "tml-from-env")
    monkeypatch.setenv("TINKER_BASE_URL", "https://env.example/")
    config = Config(api_key=None, base_url=None)
    assert (config.api_key, config.base_url) == ("tml-from-env", "https://env.example")


def test_default_base_url():
    assert Config(api_key=KEY).base_url == DEFAULT_BASE_URL
    assert DEFAULT_BASE_URL == "https://tinker.thinkingmachines.dev/services/tinker-prod"


def test_defaults():
    config = Config(api_key=KEY)
    assert (config.timeout_s, config.max_retries, config.retry_max_time_s) == (30.0, 3, 60.0)
    assert config.recovery is None and config.allow_insecure_http is False


@pytest.mark.parametrize("env_value", [None, ""])
def test_missing_key(monkeypatch, env_value):
    if env_value is not None:
        monkeypatch.setenv("TINKER_API_KEY", env_value)
    with pytest.raises(ValueError, match=r"^api_key: not given and TINKER_API_KEY is not set"):
        Config()


# --- key format -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["secret", "tml-", "TML-abc", "sk-abc", "", "Bearer tml-abc"])
def test_key_must_start_tml_or_be_jwt(key):
    with pytest.raises(ValueError, match=r"^api_key: "):
        Config(api_key=key)


def test_key_type():
    with pytest.raises(TypeError, match=r"^api_key: expected str"):
        Config(api_key=b"tml-abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["tml-abc\n", "tml-a bc", "tml-abc\t", "tml-\x00abc", "tml-abc\u2019"])
def test_key_with_whitespace_or_control_characters_refused(key):
    with pytest.raises(ValueError, match=r"^api_key: contains") as info:
        Config(api_key=key)
    assert key.strip() not in str(info.value)


def test_jwt_with_future_exp_accepted():
    token = unsigned_jwt({"sub": "user", "exp": int(time.time()) + 3600})
    assert token.startswith("eyJ")
    assert Config(api_key=token).api_key == token


def test_expired_jwt_refused():
    token = unsigned_jwt({"sub": "user", "exp": int(time.time()) - 1})
    with pytest.raises(ValueError, match=r"^api_key: the JWT has expired") as info:
        Config(api_key=token)
    assert token not in str(info.value)


@pytest.mark.parametrize(
    "token",
    [
        unsigned_jwt({"sub": "user"}),  # no exp
        unsigned_jwt({"exp": "tomorrow"}),
        unsigned_jwt({"exp": True}),
        "eyJhbGciOiJub25lIn0.bm90IGpzb24.c2ln",  # payload not JSON
        "eyJhbGciOiJub25lIn0.e30",  # two parts
        "eyJ",
    ],
)
def test_jwt_without_usable_exp_refused(token):
    with pytest.raises(ValueError, match=r"^api_key: starts like a JWT"):
        Config(api_key=token)


# --- redaction ------------------------------------------------------------------------------------


def test_key_never_in_repr_or_str(monkeypatch):
    config = Config(api_key=KEY, recovery=Policy(enabled=True))
    for text in (repr(config), str(config), f"{config}", f"{config!s} {config!r}"):
        assert KEY not in text
        assert "<redacted>" in text
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    assert KEY not in repr(Config())
    token = unsigned_jwt({"exp": int(time.time()) + 60})
    assert token not in repr(Config(api_key=token))


def test_key_never_in_validation_errors():
    for kwargs in ({"base_url": "ftp://x"}, {"timeout_s": 0}, {"recovery": 3}, {"max_retries": -1}):
        with pytest.raises((ValueError, TypeError)) as info:
            Config(api_key=KEY, **kwargs)
        assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_done_when_command_prints_both_without_the_key():
    code = "import tinker_recovery as tr; print(tr.Policy(enabled=True), tr.Config(api_key='tml-secret'))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINKER_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Policy(enabled=True" in out.stdout
    assert "Config(api_key='<redacted>'" in out.stdout
    assert "tml-secret" not in out.stdout + out.stderr


# --- base_url -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://tinker.example/", "https://tinker.example"),
        ("https://tinker.example/prefix//", "https://tinker.example/prefix"),
        ("https://tinker.example/prefix", "https://tinker.example/prefix"),
    ],
)
def test_trailing_slash_stripped(url, expected):
    assert Config(api_key=KEY, base_url=url).base_url == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://localhost:8000/",
        "http://[::1]:9000",
        "http://127.0.0.2",
        "http://LOCALHOST",
    ],
)
def test_http_to_loopback_accepted(url):
    assert Config(api_key=KEY, base_url=url).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url", ["http://tinker.example", "http://10.0.0.5:8000", "http://localhost.evil.example"]
)
def test_http_to_other_host_refused(url):
    with pytest.raises(ValueError, match=r"^base_url: plain http"):
        Config(api_key=KEY, base_url=url)
    assert Config(api_key=KEY, base_url=url, allow_insecure_http=True).base_url == url


@pytest.mark.parametrize(
    "url",
    ["tinker.example", "ftp://tinker.example", "https://", "file:///etc/x", "https://u:p@tinker.example"],
)
def test_bad_base_url(url):
    with pytest.raises(ValueError, match=r"^base_url: "):
        Config(api_key=KEY, base_url=url)


def test_base_url_type():
    with pytest.raises(TypeError, match=r"^base_url: "):
        Config(api_key=KEY, base_url=8000)  # type: ignore[arg-type]


def test_allow_insecure_http_must_be_bool():
    with pytest.raises(TypeError, match="allow_insecure_http"):
        Config(api_key=KEY, allow_insecure_http=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        ({"timeout_s": 0}, ValueError, "timeout_s"),
        ({"timeout_s": -1.0}, ValueError, "timeout_s"),
        ({"timeout_s": True}, TypeError, "timeout_s"),
        ({"timeout_s": "30"}, TypeError, "timeout_s"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 2.0}, TypeError, "max_retries"),
        ({"max_retries": False}, TypeError, "max_retries"),
        ({"retry_max_time_s": 0}, ValueError, "retry_max_time_s"),
    ],
)
def test_numbers_validated(kwargs, error, field):
    with pytest.raises(error, match=rf"^{field}: "):
        Config(api_key=KEY, **kwargs)


# --- recovery -------------------------------------------------------------------------------------


def test_recovery_as_policy():
    policy = Policy(enabled=True, max_attempts=5)
    assert Config(api_key=KEY, recovery=policy).recovery is policy


def test_recovery_as_mapping():
    path = "tinker://run-1/weights/final"
    config = Config(api_key=KEY, recovery={"enabled": True, "checkpoint_strategy": ["specific", path]})
    assert config.recovery == Policy(enabled=True, checkpoint_strategy=Specific(path))


def test_recovery_mapping_errors_surface():
    with pytest.raises(ValueError, match="unknown key"):
        Config(api_key=KEY, recovery={"enable": True})
    with pytest.raises(ValueError, match=r"^max_attempts: "):
        Config(api_key=KEY, recovery={"max_attempts": 0})


def test_recovery_none():
    assert Config(api_key=KEY, recovery=None).recovery is None


@pytest.mark.parametrize("value", [True, "latest", [("enabled", True)], 3])
def test_recovery_bad_type(value):
    with pytest.raises(TypeError, match=r"^recovery: expected a Policy, a mapping or None"):
        Config(api_key=KEY, recovery=value)


def test_config_frozen_and_keyword_only():
    config = Config(api_key=KEY)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.api_key = "tml-other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Config(KEY)  # type: ignore[misc]


def test_public_names():
    assert tinker_recovery.Config is Config and tinker_recovery.Policy is Policy
    assert {"Config", "Policy", "Specific", "RestClient", "DEFAULT_BASE_URL"} <= set(tinker_recovery.__all__)
