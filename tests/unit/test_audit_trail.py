"""The keyed audit chain: what whoever can write the state directory can and cannot hide (issue 15)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from raydeploy.audit import (
    SEALED,
    AuditKeyError,
    AuditTrail,
    event_hash,
    head_problems,
    legacy_event_hash,
    now_utc,
    sealed_evidence,
)
from raydeploy.audit_keys import key_directory, read_head, trails_made_for
from raydeploy.state import StateStore
from tests.conftest import REPO

Digest = Callable[[tuple], str]


@pytest.fixture
def store(tmp_path) -> StateStore:
    store = StateStore(tmp_path / "state")
    for number in range(4):
        store.audit.append("alice", "checkpoint started", f"cp-{number}", reason=f"CHG-{number}")
    return store


def key_of(store: StateStore) -> bytes:
    key = store.audit.key_of_trail().read()
    assert key is not None
    return key


def rewrite(store: StateStore, seq: int, details: str, digest: Digest, heads: list[Path]) -> None:
    """Give event SEQ new DETAILS and make its hash, every later hash and prev_hash, and the HEADS again
    with DIGEST (seq, at, actor, event, target, details, prev_hash) -> hash: a careful forger's work."""
    rows = store.db.execute("SELECT seq, at, actor, event, target, details, prev_hash FROM audit ORDER BY seq")
    rows = [list(row) for row in rows.fetchall()]
    prev = store.db.execute("SELECT hash FROM audit WHERE seq=?", (seq - 1,)).fetchone()
    prev = prev[0] if prev else "0" * 64
    with store.db:
        for row in rows:
            if row[0] < seq:
                continue
            if row[0] == seq:
                row[5] = details
            row[6] = prev
            prev = digest(tuple(row))
            store.db.execute(
                "UPDATE audit SET details=?, prev_hash=?, hash=? WHERE seq=?", (row[5], row[6], prev, row[0])
            )
    for head in heads:
        head.write_text(f"{rows[-1][0]} {prev}\n")


def test_a_rewrite_rehashed_with_plain_sha256_and_its_head_file_is_found(store):
    # What someone who can write the state directory, but has no key, can do: all of it consistently.
    rewrite(store, 2, '{"reason": "forged"}', lambda row: legacy_event_hash(*row), [store.audit.head_file])
    problems = store.audit.verify()
    assert "event 2: its content does not match its hash (edited)" in problems, problems


def test_a_rewrite_rehashed_with_a_wrong_key_is_found(store):
    wrong = secrets.token_bytes(32)
    rewrite(store, 2, '{"reason": "forged"}', lambda row: event_hash(wrong, *row), [store.audit.head_file])
    assert "event 2: its content does not match its hash (edited)" in store.audit.verify()


def test_an_insider_with_the_key_is_caught_by_an_anchor_taken_before_the_rewrite(store):
    anchor = store.audit.head()
    assert anchor is not None and anchor[0] == 4
    store.audit.append("bob", "run started", "run-1")
    key = key_of(store)
    heads = [store.audit.head_file, store.audit.key_of_trail().head_file]
    rewrite(store, 2, '{"reason": "forged"}', lambda row: event_hash(key, *row), heads)
    assert store.audit.verify() == [], "with the key and both heads a rewrite is consistent: only an anchor shows it"
    problems = store.audit.verify([anchor, (1, store.audit.events()[0].hash)])
    assert problems == [
        f"anchor 4: event 4's hash is {store.audit.events()[3].hash}, the anchor says {anchor[1]}: "
        "event 4 or one before it was rewritten since the anchor was taken"
    ]


def test_an_anchor_whose_event_was_deleted_is_reported(store):
    anchor = store.audit.head()
    with store.db:
        store.db.execute("DELETE FROM audit WHERE seq=4")
    assert "anchor 4: the trail has no event 4 any more (deleted)" in store.audit.verify([anchor])


def test_deleted_newest_events_are_found_by_the_head_beside_the_key_when_the_state_directory_head_is_fixed(store):
    newest_kept = store.audit.events()[1]
    with store.db:
        store.db.execute("DELETE FROM audit WHERE seq > 2")
    store.audit.head_file.write_text(f"2 {newest_kept.hash}\n")
    assert store.audit.verify() == [
        "the trail ends at event 2 but event 4 was recorded (the head kept beside the key): newest events deleted"
    ]


def test_a_missing_key_is_said_by_verify_and_refuses_appending(store):
    path = store.audit.key_of_trail().path
    path.unlink()
    problems = store.audit.verify()
    assert str(path) in problems[0] and "restore that file from your backup" in problems[0], problems
    assert problems[0].endswith("until then the trail can be neither checked nor added to"), problems
    with pytest.raises(AuditKeyError, match="restore that file from your backup") as refused:
        store.audit.append("mallory", "run started", "run-2")
    assert str(path) in str(refused.value)
    assert len(store.audit.events()) == 4 and store.audit.head()[0] == 4


def test_a_head_that_cannot_be_written_beside_the_key_refuses_the_event_and_records_nothing(store):
    head = store.audit.key_of_trail().head_file
    head.unlink()
    head.mkdir()  # as root, modes do not stop a write: a directory in its place does
    with pytest.raises(AuditKeyError, match="must be writable by whoever runs raydeploy"):
        store.audit.append("alice", "run started", "run-2")
    assert store.audit.head()[0] == 4 and store.audit.head_file.read_text().split()[0] == "4"


@pytest.mark.parametrize("forged_id", ["0" * 32, "../forged"])
def test_a_trail_whose_id_was_changed_reads_as_a_missing_key(tmp_path, monkeypatch, forged_id):
    # "../forged" names a key file the forger wrote beside the key directory: it must never be read.
    monkeypatch.setenv("RAYDEPLOY_AUDIT_KEY_DIR", str(tmp_path / "keys"))
    store = StateStore(tmp_path / "state")
    for number in range(3):
        store.audit.append("alice", "checkpoint started", f"cp-{number}")
    forged_key = secrets.token_bytes(32)
    (tmp_path / "forged.key").write_text(json.dumps({"trail": forged_id, "key": forged_key.hex()}))
    with store.db:
        store.db.execute("UPDATE audit_meta SET value=? WHERE name='trail_id'", (forged_id,))
    rewrite(store, 2, '{"reason": "forged"}', lambda row: event_hash(forged_key, *row), [store.audit.head_file])
    problems = store.audit.verify()
    assert problems and "is not at" in problems[0] and "restore that file from your backup" in problems[0], problems
    with pytest.raises(AuditKeyError, match="restore that file"):
        store.audit.append("mallory", "run started", "run-2")


def test_the_key_is_private_and_kept_apart_from_the_state_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDEPLOY_AUDIT_KEY_DIR", str(tmp_path / "keys" / "audit"))
    store = StateStore(tmp_path / "state")
    path = store.audit.key_of_trail().path
    assert path.parent == tmp_path / "keys" / "audit" and store.directory not in path.parents
    assert path.parent.stat().st_mode & 0o777 == 0o700 and path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["state_dir"] == str(store.directory.resolve())
    assert len(key_of(store)) == 32


def test_the_key_directory_defaults_to_the_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.delenv("RAYDEPLOY_AUDIT_KEY_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert key_directory() == tmp_path / "xdg" / "raydeploy" / "audit-keys"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert key_directory() == tmp_path / "home" / ".config" / "raydeploy" / "audit-keys"


def test_tests_and_the_commands_they_start_keep_keys_in_the_tests_key_directory(tmp_path, raydeploy_cli):
    directory = key_directory()
    assert directory == Path(os.environ["RAYDEPLOY_AUDIT_KEY_DIR"]) and Path.home() not in directory.parents
    made = raydeploy_cli("reset", "--yes", "--state-dir", str(tmp_path / "cli-state"))
    assert made.returncode == 0, made.stderr
    owners = [json.loads(path.read_text())["state_dir"] for path in directory.glob("*.key")]
    assert str((tmp_path / "cli-state").resolve()) in owners


def legacy_trail(directory: Path, events: int) -> list[tuple]:
    """A state database as the version before keys wrote it: plain SHA-256 chain, head file, no trail id."""
    directory.mkdir()
    database = sqlite3.connect(directory / "state.db")
    database.execute(
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, event TEXT NOT NULL,"
        " target TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
    )
    rows, prev = [], "0" * 64
    for seq in range(1, events + 1):
        body = (seq, f"2026-01-0{seq}T00:00:00.000000Z", "alice", "run started", f"run-{seq}", "{}", prev)
        prev = hashlib.sha256(json.dumps(list(body), ensure_ascii=True).encode()).hexdigest()
        rows.append((*body, prev))
    database.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)", rows)
    database.commit()
    database.close()
    (directory / "audit.head").write_text(f"{events} {prev}\n")
    return rows


def test_a_trail_from_before_keys_is_sealed_once_under_a_new_key(tmp_path):
    old = legacy_trail(tmp_path / "state", 3)
    store = StateStore(tmp_path / "state")
    events = store.audit.events()
    assert [e.event for e in events] == ["run started"] * 3 + [SEALED]
    assert events[-1].details == {
        "events_sealed": 3,
        "old_head": f"3 {old[-1][7]}",
        "old_problems": [],
        "earlier_trails": [],
    }
    assert [(e.at, e.target) for e in events[:3]] == [(row[1], row[4]) for row in old]
    key = key_of(store)
    assert events[0].hash == event_hash(key, *old[0][:7])
    assert store.audit.verify() == []
    assert len(StateStore(tmp_path / "state").audit.events()) == 4, "sealed twice"


def test_sealing_keeps_the_evidence_of_a_tampered_old_chain(tmp_path):
    legacy_trail(tmp_path / "state", 3)
    database = sqlite3.connect(tmp_path / "state" / "state.db")
    database.execute("UPDATE audit SET actor='mallory' WHERE seq=2")
    database.commit()
    database.close()
    store = StateStore(tmp_path / "state")
    sealed = store.audit.events()[-1]
    assert sealed.details["old_problems"] == ["event 2: its content does not match its hash (edited)"]
    assert store.audit.verify() == [
        "event 4: before the trail was sealed, event 2: its content does not match its hash (edited)"
    ]


def test_a_keyed_trail_stripped_of_its_id_and_rehashed_the_old_way_is_found_when_sealed_again(store):
    # Every event rehashed the old way, from the first: the old chain is flawless, only the key directory knows.
    earlier = store.audit.key_of_trail().trail_id
    rewrite(store, 1, '{"reason": "forged"}', lambda row: legacy_event_hash(*row), [store.audit.head_file])
    with store.db:
        store.db.execute("DELETE FROM audit_meta")
    problems = StateStore(store.directory).audit.verify()
    assert problems == [
        f"event 5: this state directory had a keyed trail before ({earlier}): its id was removed or the directory"
        " replaced, and the trail sealed again"
    ]


def test_a_new_state_directory_where_an_old_one_was_deleted_starts_a_trail_that_verifies(store):
    shutil.rmtree(store.directory)
    again = StateStore(store.directory)
    assert again.audit.events() == [] and again.audit.verify() == []


def test_two_processes_opening_an_old_trail_at_once_seal_it_once(tmp_path):
    legacy_trail(tmp_path / "state", 3)
    opener = "import sys; from raydeploy.state import StateStore; StateStore(sys.argv[1])"
    openers = [subprocess.Popen([sys.executable, "-c", opener, str(tmp_path / "state")], cwd=REPO) for _ in range(2)]
    assert [process.wait(timeout=60) for process in openers] == [0, 0]
    store = StateStore(tmp_path / "state")
    assert [e.event for e in store.audit.events()].count(SEALED) == 1 and store.audit.verify() == []


def test_the_cli_prints_the_head_and_checks_anchors(store, raydeploy_cli):
    state = ["--state-dir", str(store.directory)]
    head = raydeploy_cli("audit", "--head", *state)
    seq, digest = head.stdout.split()
    assert head.returncode == 0 and (int(seq), digest) == store.audit.head()
    assert raydeploy_cli("audit", "--verify", "--anchor", f"{seq}:{digest}", *state).returncode == 0
    wrong = "f" * 64
    checked = raydeploy_cli("audit", "--verify", "--anchor", f"{seq}:{digest}", "--anchor", f"2:{wrong}", *state)
    assert checked.returncode == 1 and "TAMPERED" in checked.stdout
    assert f"anchor 2: event 2's hash is {store.audit.events()[1].hash}, the anchor says {wrong}" in checked.stderr
    malformed = raydeploy_cli("audit", "--verify", "--anchor", "2:abc", *state)
    assert malformed.returncode == 2 and "is not SEQ:HASH" in malformed.stderr


def test_the_cli_refuses_to_record_without_the_key_naming_its_path(store, raydeploy_cli):
    path = store.audit.key_of_trail().path
    path.unlink()
    refused = raydeploy_cli("reset", "--yes", "--state-dir", str(store.directory))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert f"is not at {path}: restore that file from your backup" in refused.stderr
    checked = raydeploy_cli("audit", "--verify", "--state-dir", str(store.directory))
    assert checked.returncode == 1 and str(path) in checked.stderr


def test_the_api_answers_503_without_the_key_and_names_no_path(tmp_path):
    from fastapi.testclient import TestClient

    from raydeploy.api.app import create_app

    app = create_app("inventories/lab.py", tmp_path / "state")
    app.state.store.audit.key_of_trail().path.unlink()
    answer = TestClient(app, raise_server_exceptions=False).get("/api/v1/audit")  # a refusal it must audit
    assert answer.status_code == 503 and answer.json()["error"] == "AUDIT_UNAVAILABLE", answer.text
    assert str(key_directory()) not in answer.text


def test_a_process_that_found_no_trail_id_just_before_another_sealed_the_trail_does_not_seal_it_again(tmp_path):
    # The race above, made certain: the late opener checked for an id before the first one sealed.
    legacy_trail(tmp_path / "state", 3)
    first = StateStore(tmp_path / "state")
    late = AuditTrail.__new__(AuditTrail)
    late.connection = sqlite3.connect(first.directory / "state.db", isolation_level=None)
    late.head_file = first.audit.head_file
    late._seal()
    assert [e.event for e in first.audit.events()].count(SEALED) == 1 and first.audit.verify() == []


def test_an_exported_event_is_one_ascii_line_with_sorted_keys_whatever_its_free_text_holds(store):
    # U+2028 is a line break to str.splitlines and to many log readers: raw, it would start a forged line.
    forged = 'CHG-9\u2028{"seq": 99, "event": "forged"}\r\nx'
    event = store.audit.append("alice", "approval granted", "cleanup-existing", reason=forged)
    line = event.as_json()
    assert line.isascii() and len(line.splitlines()) == 1
    assert list(json.loads(line)) == sorted(json.loads(line)) and json.loads(line)["details"] == {"reason": forged}


def test_details_are_stored_as_canonical_json_and_values_json_cannot_hold_as_their_text(store):
    event = store.audit.append("alice", "run started", zulu=1, alpha="é", path=Path("/srv/inventory.py"))
    stored = store.db.execute("SELECT target, details FROM audit WHERE seq=?", (event.seq,)).fetchone()
    assert tuple(stored) == ("", '{"alpha": "\\u00e9", "path": "/srv/inventory.py", "zulu": 1}')
    assert event.target == "" and store.audit.verify() == []


def test_each_event_names_the_hash_of_the_one_before_and_a_limit_gives_the_newest(store):
    events = store.audit.events()
    assert [event.prev_hash for event in events] == ["0" * 64] + [event.hash for event in events[:-1]]
    assert [event.seq for event in store.audit.events(limit=1)] == [4]
    assert [event.seq for event in store.audit.events(limit=2)] == [3, 4]
    assert store.audit.head() == (4, events[-1].hash)


def test_deleted_newest_events_are_found_by_the_state_directory_head_when_the_head_beside_the_key_is_fixed(store):
    newest_kept = store.audit.events()[1]
    with store.db:
        store.db.execute("DELETE FROM audit WHERE seq > 2")
    store.audit.key_of_trail().head_file.write_text(f"2 {newest_kept.hash}\n")
    assert store.audit.verify() == [
        "the trail ends at event 2 but event 4 was recorded (the head file in the state directory): newest events deleted"
    ]


def seal_row(seq: int, details: dict) -> tuple:
    return (seq, "2026-01-01T00:00:00.000000Z", "root", SEALED, "/srv/state", json.dumps(details), "0" * 64, "f" * 64)


def test_what_every_seal_found_wrong_is_reported_and_a_seal_without_old_problems_reads(store):
    rows = [
        seal_row(1, {"old_problems": ["event 2: edited"], "earlier_trails": []}),
        (2, "2026-01-01T00:00:01.000000Z", "alice", "run started", "run-1", "{}", "f" * 64, "e" * 64),
        seal_row(3, {"old_problems": ["event 5: deleted"], "earlier_trails": ["a" * 32, "b" * 32]}),
        seal_row(4, {"events_sealed": 0}),
    ]
    assert sealed_evidence(rows) == [
        "event 1: before the trail was sealed, event 2: edited",
        "event 3: before the trail was sealed, event 5: deleted",
        f"event 3: this state directory had a keyed trail before ({'a' * 32}, {'b' * 32}): its id was removed or the "
        "directory replaced, and the trail sealed again",
    ]


EVENT = (7, "2026-01-02T03:04:05.000006Z", "zoë", "run started", "run-1", '{"reason": "CHG-7"}', "a" * 64)


def test_an_events_hash_is_the_same_in_every_raydeploy_version_so_old_trails_verify():
    # HMAC-SHA256 of the JSON list of the seven fields, ASCII-escaped: changing that makes every trail look edited.
    assert event_hash(bytes(range(32)), *EVENT) == "5dcffe41345d298fc4e680f9a0a183cfd58fbee5a443268153b6172424219a43"
    assert legacy_event_hash(*EVENT) == "2ce46a646906c22e29a13cc2a8847c5de9dbf7acd9bd3eb11af86e0ec95aaaa9"


@pytest.mark.parametrize("field", range(7))
def test_an_events_hash_covers_each_of_its_fields(field):
    changed = list(EVENT)
    changed[field] = 8 if field == 0 else changed[field] + "x"
    assert event_hash(b"k" * 32, *changed) != event_hash(b"k" * 32, *EVENT)


def test_event_times_are_utc_whatever_the_machines_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30
    time.tzset()
    try:
        recorded = datetime.strptime(now_utc(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert abs((datetime.now(UTC) - recorded).total_seconds()) < 60


def test_the_event_append_returns_is_the_one_recorded(store):
    event = store.audit.append("bob", "run started", "run-9", reason="CHG-9")
    assert event == store.audit.events()[-1]


def test_an_event_that_cannot_be_recorded_leaves_the_callers_transaction_to_the_caller(store):
    store.db.execute("BEGIN")
    store.db.execute("INSERT INTO audit_meta (name, value) VALUES ('caller', 'pending')")
    store.audit.key_of_trail().path.unlink()
    with pytest.raises(AuditKeyError):
        store.audit.append("alice", "run started", "run-2")
    assert store.db.in_transaction, "the caller's transaction was rolled back under it"
    store.db.execute("ROLLBACK")


def test_a_trail_whose_every_event_was_deleted_is_found_by_its_heads(store):
    with store.db:
        store.db.execute("DELETE FROM audit")
    assert store.audit.verify()[0] == (
        "the trail ends at event 0 but event 4 was recorded (the head file in the state directory): newest events deleted"
    )


def test_a_missing_state_directory_head_is_reported(store):
    store.audit.head_file.unlink()
    assert store.audit.verify() == [
        f"the head file in the state directory ({store.audit.head_file}) is missing: the trail cannot be checked "
        "for deleted newest events"
    ]


def test_sealing_an_old_trail_whose_newest_events_were_deleted_records_it(tmp_path):
    old = legacy_trail(tmp_path / "state", 3)
    database = sqlite3.connect(tmp_path / "state" / "state.db")
    database.execute("DELETE FROM audit WHERE seq=3")
    database.commit()
    database.close()
    store = StateStore(tmp_path / "state")
    sealed = store.audit.events()[-1]
    assert sealed.details["old_problems"] == [
        "the trail ends at event 2 but event 3 was recorded (the head file in the state directory): newest events deleted"
    ]
    assert sealed.details["old_head"] == f"2 {old[1][7]}" and sealed.target == str((tmp_path / "state").resolve())


def test_a_state_directory_holding_only_an_old_head_is_sealed_with_that_evidence(tmp_path):
    (tmp_path / "stäte").mkdir()  # its path is in the evidence: stored ASCII-escaped like every event's details
    (tmp_path / "stäte" / "audit.head").write_text("five\n")  # the evidence names the head file's path
    store = StateStore(tmp_path / "stäte")
    [sealed] = store.audit.events()
    assert sealed.event == SEALED and sealed.details["old_head"] == "" and sealed.details["events_sealed"] == 0
    stored = store.db.execute("SELECT details FROM audit WHERE seq=1").fetchone()[0]
    assert stored == json.dumps(sealed.details, sort_keys=True, ensure_ascii=True)


def test_a_key_directory_that_cannot_be_made_refuses_the_trail_and_says_where(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("RAYDEPLOY_AUDIT_KEY_DIR", str(tmp_path / "file" / "keys"))
    with pytest.raises(AuditKeyError) as refused:
        StateStore(tmp_path / "state")
    assert str(refused.value).startswith(f"cannot make the audit trail's key in {tmp_path / 'file' / 'keys'} (")
    assert str(refused.value).endswith(
        "set RAYDEPLOY_AUDIT_KEY_DIR to a directory you can write, kept apart from the state directory"
    )
    database = sqlite3.connect(tmp_path / "state" / "state.db")
    assert database.execute("SELECT count(*) FROM audit_meta").fetchone() == (0,)


def test_strange_files_in_the_key_directory_do_not_hide_an_earlier_trail(tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    monkeypatch.setenv("RAYDEPLOY_AUDIT_KEY_DIR", str(keys))
    store = StateStore(tmp_path / "state")
    (keys / "a.key").mkdir()  # unreadable: OSError
    (keys / "b.key").write_text("not json")  # ValueError
    (keys / "c.key").write_text("[1, 2]")  # no .get: AttributeError
    assert trails_made_for(store.directory.resolve()) == [store.audit.key_of_trail().trail_id]


def test_a_head_reads_as_its_number_and_hash_and_anything_else_as_number_minus_one(tmp_path):
    head = tmp_path / "head"
    assert read_head(head) is None
    head.write_text("12 abc def\n")
    assert read_head(head) == (12, "abc def")
    head.write_text("twelve abc\n")
    assert read_head(head) == (-1, "abc")


def test_a_newest_event_replaced_with_both_heads_kept_is_found(store):
    # Event 4 rewritten with a new hash (any key), the heads left as they were: they still name the old hash.
    rewrite(store, 4, '{"reason": "forged"}', lambda row: legacy_event_hash(*row), [])
    assert "event 4: differs from the one recorded as newest (the head file in the state directory)" in (
        store.audit.verify()
    )


@pytest.mark.parametrize(
    ("head", "problems"),
    [
        pytest.param("0 " + "0" * 64, [], id="event 0 is an empty trail's head"),
        pytest.param("1 " + "c" * 64, [], id="a head behind the table is not itself a break"),
        pytest.param("2 " + "c" * 64, ["event 2: differs from the one recorded as newest (head)"], id="same event"),
        pytest.param("x " + "c" * 64, ["head (H) is not a head (SEQ HASH)"], id="not a head"),
    ],
)
def test_a_head_is_compared_with_the_newest_event(tmp_path, head, problems):
    (tmp_path / "H").write_text(head)
    rows = [(1, "", "", "", "", "{}", "0" * 64, "a" * 64), (2, "", "", "", "", "{}", "a" * 64, "b" * 64)]
    expected = [problem.replace("(H)", f"({tmp_path / 'H'})") for problem in problems]
    assert head_problems(tmp_path / "H", "head", rows if head[0] != "0" else []) == expected


def test_a_listener_is_told_each_event_inside_its_transaction_and_an_error_there_undoes_the_event(store):
    """The webhook outbox listens here: what it writes must commit or roll back with the event."""
    told = []

    def listener(connection: sqlite3.Connection, event) -> None:
        told.append((connection.in_transaction, event.seq, event.event, event.details))
        if event.target == "refused":
            raise RuntimeError("the outbox could not queue it")

    store.audit.listeners.append(listener)
    added = store.audit.append("bob", "run started", "r1", command="deploy")
    assert told == [(True, added.seq, "run started", {"command": "deploy"})]
    assert added.seq == 5 and added.hash == store.audit.head()[1]
    with pytest.raises(RuntimeError, match="could not queue"):
        store.audit.append("bob", "run started", "refused")
    assert store.audit.head()[0] == 5 and store.audit.verify() == []
