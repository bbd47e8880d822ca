"""engine/io/output_safety.py: the one output-safety rule (targets against inputs, existing
files, folders), publication of temporary files, the lock per target and redaction."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import PLUGINS_DIR

from tessera.engine.errors import CancelledError, TesseraError
from tessera.engine.io.output_safety import (
    LOCK_SUFFIX,
    TEMPORARY_MARK,
    Publication,
    TargetLock,
    check_folder,
    check_targets,
    redact,
    same_file,
    temporary_path,
)


def _write(path, text="x"):
    path.write_text(text)
    return str(path)


def test_same_file_resolves_links_and_geopackage_layers(tmp_path):
    real = _write(tmp_path / "data.gpkg")
    link = tmp_path / "link.gpkg"
    os.symlink(real, link)
    assert same_file(real, link) and same_file(f"{link}|layername=polys", real)
    assert same_file(f"{real}|layername=a", f"{real}|layername=b")  # one file, two layers
    assert not same_file(real, _write(tmp_path / "other.gpkg"))
    missing = tmp_path / "sub" / ".." / "missing.tif"
    assert same_file(missing, tmp_path / "missing.tif")  # not there yet: compared by path
    assert not same_file("s3://bucket/x.zarr", "s3://bucket/x.zarr")  # not local files
    assert not same_file(None, real)


def test_check_targets_refuses_inputs_duplicates_and_existing_files(tmp_path):
    image = _write(tmp_path / "image.tif")
    link = tmp_path / "alias.tif"
    os.symlink(image, link)
    with pytest.raises(TesseraError, match="output table .*alias.tif is the input image .*"
                                           "image.tif.*would destroy an input"):
        check_targets([(str(link), "output table")], [(image, "input image")])
    with pytest.raises(TesseraError, match="output table and the block map are both"):
        check_targets([(tmp_path / "a.csv", "block map"), (tmp_path / "a.csv", "output table")])
    existing = _write(tmp_path / "old.csv")
    with pytest.raises(TesseraError, match="old.csv already exists: choose to overwrite it"):
        check_targets([(existing, "output table")])
    check_targets([(existing, "output table")], overwrite=True)
    check_targets([(existing, "RAT")], may_exist=True)
    with pytest.raises(TesseraError, match="would destroy an input"):  # overwrite never an input
        check_targets([(image, "output")], [(image, "input image")], overwrite=True)
    os.makedirs(tmp_path / "folder.csv")
    with pytest.raises(TesseraError, match="is a folder: give a file name"):
        check_targets([(tmp_path / "folder.csv", "output table")])
    with pytest.raises(TesseraError, match="does not exist"):
        check_targets([(tmp_path / "nowhere" / "t.csv", "output table")])
    check_targets([(None, "output table"), ("s3://bucket/a.zarr", "RAT")])  # skipped


def test_check_folder_refuses_a_file_and_a_missing_parent(tmp_path):
    a_file = _write(tmp_path / "out")
    with pytest.raises(TesseraError, match="out is a file, not a folder"):
        check_folder(a_file, "output folder", create=True)
    with pytest.raises(TesseraError, match="out is a file, not a folder"):
        check_folder(os.path.join(a_file, "deeper"), "output folder", create=True)
    with pytest.raises(TesseraError, match="does not exist"):
        check_folder(tmp_path / "new", "output folder")
    check_folder(tmp_path / "new" / "deeper", "output folder", create=True)
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_check_folder_refuses_a_read_only_folder():
    """Run as a user who may not write the folder (root writes anywhere: as root the check
    runs in a process that became 'nobody')."""
    import subprocess
    import sys
    import tempfile

    from conftest import REPO

    with tempfile.TemporaryDirectory() as parent:
        os.chmod(parent, 0o755)
        folder = os.path.join(parent, "locked")
        os.mkdir(folder, 0o555)
        os.symlink(REPO, os.path.join(parent, "tessera"))  # importable by that user too
        code = (f"import sys; sys.path.insert(0, {parent!r})\n"
                "from tessera.engine.io.output_safety import check_folder\n"
                f"check_folder({folder!r})\n")
        drop = None
        if os.geteuid() == 0:
            def drop():
                os.setgid(65534)
                os.setuid(65534)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              preexec_fn=drop, cwd=parent)
        assert done.returncode == 1, done.stderr
        assert "TesseraError" in done.stderr and "locked is not writable" in done.stderr


def test_publication_renames_together_or_not_at_all(tmp_path):
    old = _write(tmp_path / "a.tif", "old a")
    _write(tmp_path / "a.tif.aux.xml", "old side car")
    with Publication() as publication:
        first = publication.add(old, companions=(".aux.xml",))
        second = publication.add(tmp_path / "b.json")
        assert os.path.dirname(first) == str(tmp_path) and TEMPORARY_MARK in first
        assert first.endswith(".tif") and second.endswith(".json")
        _write(tmp_path / os.path.basename(first), "new a")
        _write(tmp_path / os.path.basename(second), "new b")
        assert (tmp_path / "a.tif").read_text() == "old a"  # nothing visible before publish
    assert (tmp_path / "a.tif").read_text() == "new a"
    assert (tmp_path / "b.json").read_text() == "new b"
    assert not (tmp_path / "a.tif.aux.xml").exists()  # the replaced output's side car went
    assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.json"]

    with pytest.raises(RuntimeError), Publication() as publication:
        _write(tmp_path / os.path.basename(publication.add(tmp_path / "a.tif")), "newer")
        raise RuntimeError("a failure after writing")
    assert (tmp_path / "a.tif").read_text() == "new a"
    assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.json"]

    publication = Publication()
    _write(tmp_path / os.path.basename(publication.add(tmp_path / "a.tif")), "newest")
    publication.add(tmp_path / "b.json")  # never written
    with pytest.raises(TesseraError, match="b.json was not written"):
        publication.publish()
    publication.discard()
    assert (tmp_path / "a.tif").read_text() == "new a"  # all or nothing
    assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.json"]


def test_temporary_paths_are_fresh_and_keep_double_extensions(tmp_path):
    first = temporary_path(tmp_path / "r.tif.aux.xml")
    assert first.endswith(".aux.xml") and first != temporary_path(tmp_path / "r.tif.aux.xml")


HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {plugins!r})
    from tessera.engine.io.output_safety import TargetLock
    lock = TargetLock({target!r}).acquire()
    print("locked", flush=True)
    time.sleep(float(sys.argv[1]))
    lock.release()
    print("released", flush=True)
""")


def _holder(target, seconds):
    script = HOLDER.format(plugins=PLUGINS_DIR, target=str(target))
    process = subprocess.Popen([sys.executable, "-c", script, str(seconds)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_waits_until_the_first_releases(tmp_path):
    target = tmp_path / "table.csv"
    holder = _holder(target, 1.5)
    told, started = [], time.monotonic()
    with TargetLock(target, waiting=told.append, poll=0.05):
        waited = time.monotonic() - started
        assert holder.poll() is not None or holder.wait(5) == 0
    assert holder.stdout.read().strip() == "released"
    assert waited >= 0.5 and len(told) == 1 and "table.csv" in told[0]
    assert not os.path.exists(str(target) + LOCK_SUFFIX)  # removed on release


def test_a_killed_holder_blocks_nobody_and_a_waiter_can_be_cancelled(tmp_path):
    target = tmp_path / "rat.tif"
    holder = _holder(target, 60)
    with pytest.raises(CancelledError):
        TargetLock(target, cancelled=lambda: True, poll=0.05).acquire()
    holder.kill()
    holder.wait(10)
    started = time.monotonic()
    with TargetLock(target, poll=0.05):
        assert time.monotonic() - started < 5
    holder.stdout.close()


def test_redact_hides_credentials_in_urls_and_parameters():
    text = ("s3://AKIAKEY:SuperSecret42@bucket/x.zarr and "
            "https://user:pa55@host/a?X-Amz-Signature=abc123&password=hunter2&size=3")
    redacted = redact(text)
    for secret in ("AKIAKEY", "SuperSecret42", "pa55", "abc123", "hunter2"):
        assert secret not in redacted
    assert "s3://***@bucket/x.zarr" in redacted and "size=3" in redacted
    assert redact("/data/plain/path.tif") == "/data/plain/path.tif"
    # a URL squashed by path functions still loses its secret; a drive letter is no scheme
    assert redact("/vsicurl/https:/user:pa55@host/x.tif") == "/vsicurl/https:/***@host/x.tif"
    assert redact("C:/maps/me@home.tif") == "C:/maps/me@home.tif"
