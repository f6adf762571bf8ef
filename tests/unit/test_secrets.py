"""Generated secrets (deploys/credentials.py) and the files that carry them (deploys/secret_files.py), no hosts."""

from __future__ import annotations

import hashlib
import pathlib

from deploys.credentials import read_secret, secret
from deploys.secret_files import digest


def test_a_secret_is_generated_once_and_the_same_value_returned_on_every_rerun(tmp_path):
    first = secret(str(tmp_path), "redis-password")
    assert secret(str(tmp_path), "redis-password") == first
    assert (tmp_path / "secrets" / "redis-password").read_text() == first + "\n"
    assert secret(str(tmp_path), "ray-auth-token") != first, "each name is its own secret"


def test_a_secret_is_private_to_its_owner(tmp_path):
    secret(str(tmp_path), "grafana-admin-password")
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "secrets" / "grafana-admin-password").stat().st_mode & 0o777 == 0o600


def test_a_secret_has_the_strength_asked_for(tmp_path):
    # token_urlsafe: 4 characters per 3 random bytes, no padding.
    assert len(secret(str(tmp_path), "default")) == 43
    assert len(secret(str(tmp_path), "short", nbytes=12)) == 16


def test_a_secret_made_meanwhile_by_another_run_is_the_one_both_use(tmp_path, monkeypatch):
    """Two runs ask at once: the one that loses the race to create the file uses the winner's secret."""
    path = tmp_path / "secrets" / "redis-password"
    looked = pathlib.Path.exists

    def other_run_writes_it_just_after_we_looked(self: pathlib.Path) -> bool:
        there = looked(self)
        if self == path and not there:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("the-other-runs-secret\n")
        return there

    monkeypatch.setattr(pathlib.Path, "exists", other_run_writes_it_just_after_we_looked)
    assert secret(str(tmp_path), "redis-password") == "the-other-runs-secret"
    assert path.read_text() == "the-other-runs-secret\n"


def test_reading_a_secret_never_generates_it(tmp_path):
    assert read_secret(str(tmp_path), "redis-password") is None
    assert not (tmp_path / "secrets").exists()
    made = secret(str(tmp_path), "redis-password")
    assert read_secret(str(tmp_path), "redis-password") == made


def test_a_digest_names_the_content_it_was_made_from():
    assert (
        digest("GF_SECURITY_ADMIN_PASSWORD=a\n") == hashlib.sha256(b"GF_SECURITY_ADMIN_PASSWORD=a\n").hexdigest()[:16]
    )
    assert digest("a") != digest("b")


def test_a_secret_can_be_made_before_the_state_directory_exists(tmp_path):
    state = tmp_path / "not" / "yet"
    made = secret(str(state), "redis-password")
    assert (state / "secrets" / "redis-password").read_text() == made + "\n"
