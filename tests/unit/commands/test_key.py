"""``runner-cache key locate|explain``: no store, no Prefect server, nothing heavy imported.

Expected names are worked out from the runner's source (``file@tag`` next to each case), not from the module.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner_cache.cli import main

# sha256("main-protected"), independent of the code under test (`printf %s main-protected | sha256sum`)
MAIN_HASH = "466a3df3e57a1b08df962a07ed964c83df72766aa83f2983c073ea49bd666866"


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No runner-cache.toml of the developer's, no RUNNER_CACHE_* of theirs."""
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["key", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_locate_json_for_a_nested_key_with_a_glrt_token(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "locate",
        "--project-id",
        "42",
        "--key",
        "feature/login-protected",
        "--short-token",
        "AbCdEfGhI",
        "--runner-version",
        "18.4.0",
        "--path",
        "",
        "--no-shared",
        "--json",
    )
    document = json.loads(out)
    assert code == 0
    # cache/cache.go@v18.4.0: path.Join(Path, "runner", short token, "project", id, key)
    assert document["object_name"] == "runner/AbCdEfGhI/project/42/feature/login-protected"
    assert document["short_token"] == "AbCdEfGhI"
    assert document["rules"] == "18.4.0 ≤ version < 19.0.0"


def test_locate_reads_the_token_from_stdin_and_never_prints_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "glrt-t1_SeCrEtToKeN0123456789"
    monkeypatch.setattr(sys, "stdin", io.StringIO(token + "\n"))
    code, out, err = run(
        capsys,
        "locate",
        "--project-id",
        "7",
        "--key",
        "main-protected",
        "--token",
        "-",
        "--runner-version",
        "18.1.3",
        "--path",
        "cache",
        "--no-shared",
    )
    assert code == 0
    # helpers/shorten_token.go@v18.1.3: glrt- → token[5:14]
    assert out.splitlines()[0] == "cache/runner/t1_SeCrEt/project/7/main-protected"
    assert token not in out + err


def test_locate_hashed_and_sharded(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "locate",
        "--project-id",
        "42",
        "--key",
        "main-protected",
        "--shared",
        "--path",
        "",
        "--hash-keys",
        "--runner-version",
        "v19.0.0",
        "--json",
    )
    document = json.loads(out)
    # shells/abstract.go@v19.0.0 (sha256 of the key), cache/cache.go@v19.0.0 (shard = hash[:2])
    assert code == 0 and document["object_name"] == f"project/42/46/{MAIN_HASH}"
    assert document["x_amz_meta_cachekey"] == "main-protected" and document["hashed"] is True


def test_locate_defaults_come_from_the_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_CACHE_CACHE__PATH", "ci/cache")
    monkeypatch.setenv("RUNNER_CACHE_CACHE__SHARED", "true")
    code, out, _ = run(capsys, "locate", "--project-id", "3", "--key", "win\\x", "--runner-version", "18.0.5")
    # shells/abstract.go@v18.0.5: the upload sanitizer turns '\' into '/'
    assert code == 0 and out.splitlines()[0] == "ci/cache/project/3/win/x"
    assert "sanitizes the key" in out


def test_locate_says_when_the_runner_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "locate", "--project-id", "3", "--key", "..", "--shared", "--path", "", "--json")
    document = json.loads(out)
    assert code == 1 and document["object_name"] is None and "sanitizes to nothing" in document["reason"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--runner-version", "18.4"], "patch"),
        (["--no-shared"], "not shared"),
        (["--token", "abcdefghijk", "--short-token", "abc"], "not both"),
    ],
)
def test_locate_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run(capsys, "locate", "--project-id", "1", "--key", "k", "--path", "", *argv)
    assert code == 2 and message in err
    assert "abcdefghijk" not in err


def test_explain_lists_in_order_with_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    names = [
        "cache/runner/AbCdEfGhI/project/42/feature/login-2-protected",
        f"cache/project/42/47/{MAIN_HASH}",  # cache/cache.go@v19.0.0: the shard is always hash[:2]
        "cache/runner/AbCdEfGhI/project/42/",
    ]
    code, out, _ = run(capsys, "explain", *names, "--path", "cache/", "--json")
    document = json.loads(out)
    assert code == 1
    assert [item["name"] for item in document] == names
    first, second, third = document
    assert first["cache_object"] is True and first["layout"] == "runner" and first["project_id"] == 42
    assert (first["key"], first["key_base"], first["index"], first["protection"]) == (
        "feature/login-2-protected",
        "feature/login",
        2,
        "protected",
    )
    assert second["cache_object"] is False and "first two hex digits" in second["reason"]
    assert third["cache_object"] is False and "folder marker" in third["reason"]
    assert any("used as 'cache'" in note for note in first["notes"])


def test_explain_text_and_exit_0_when_all_are_cache_objects(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", f"project/9/46/{MAIN_HASH}", "--path", "")
    assert code == 0 and "hashed: True" in out and "19.0.0" in out


def test_key_commands_import_nothing_heavy() -> None:
    """Under a second to start: the key command must not import Prefect, minio, kubernetes, docker or gitlab."""
    probe = (
        "import sys; from runner_cache.cli import main; "
        "code = main(['key', 'explain', 'project/1/main', '--path', '']); "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'minio', 'kubernetes', 'docker', 'gitlab'}); "
        "print(heavy); sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
