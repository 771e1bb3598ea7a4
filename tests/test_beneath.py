"""File-system steps on inputs: no symlink followed at any depth, non-UTF-8 names, moves across
file systems, private modes.

Real folders, real symlinks (a parent folder swapped for a link between the lookup and the call,
done in that order, no threads), a real tmpfs mounted by the test for cross-device moves, a
real seccomp filter for the openat2 fallback, and the real CLI and daemon end to end.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import platform
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY, run_radiomicsd
from daemon_helpers import Daemon, pseudonym_of, variant

from radiomicsd.daemon import beneath
from radiomicsd.daemon.beneath import InputRoot, OutsideInput, move_out, path_text
from radiomicsd.daemon.disposal import dispose_input, quarantine_input
from radiomicsd.daemon.journal import SqliteJournal
from radiomicsd.daemon.sources import open_input
from radiomicsd.pipeline.deid.pseudonym import pseudonym
from radiomicsd.pipeline.errors import NotRegularFile, SymlinkRefused

#: A file name that is not valid UTF-8 (Python sees it with surrogate escapes).
BAD_NAME = os.fsdecode(b"\xff\xfe bad.avi")
BAD_DIR = os.fsdecode(b"ward-\xe9")  # Latin-1 e-acute: not UTF-8 either
METHODS = ["openat2", "walk"]


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    if request.param == "openat2" and not beneath.openat2_available():
        pytest.skip("this kernel or its seccomp filter has no openat2(2)")
    return request.param


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 16 MiB tmpfs: another file system than ``tmp_path``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        assert os.stat(mnt).st_dev != os.stat(tmp_path).st_dev
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def cli_pseudonym(data: bytes) -> str:
    """The pseudonym ``run_radiomicsd`` gives to a file holding ``data``."""
    return pseudonym(bytes.fromhex(TEST_KEY), hashlib.sha256(data).digest())


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def swap_for_link(folder: Path, target: Path) -> Path:
    """What the adversary did: ``mv folder folder.old; ln -s target folder``."""
    old = folder.with_name(folder.name + ".old")
    os.rename(folder, old)
    folder.symlink_to(target, target_is_directory=True)
    return old


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """in/a/b/c/clip.avi (the input) and elsewhere/ with files the daemon must never touch."""
    inp, outside = tmp_path / "in", tmp_path / "elsewhere"
    clip = inp / "a" / "b" / "c" / "clip.avi"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"inside")
    outside.mkdir()
    for name in ("clip.avi", "c/clip.avi", "b/c/clip.avi"):
        (outside / name).parent.mkdir(parents=True, exist_ok=True)
        (outside / name).write_bytes(b"outside: never to be read")
    return {"in": inp, "clip": clip, "outside": outside}


def outside_untouched(outside: Path) -> bool:
    return all(p.read_bytes() == b"outside: never to be read"
               for p in outside.rglob("*.avi")) and len(list(outside.rglob("*.avi"))) == 3


# -- InputRoot ----------------------------------------------------------------------------------

def test_open_lstat_unlink_below_the_root(tmp_path: Path, method: str) -> None:
    deep = tmp_path / "in" / BAD_DIR / "sub" / BAD_NAME
    deep.parent.mkdir(parents=True)
    deep.write_bytes(b"content")
    with InputRoot(tmp_path / "in", method=method) as root:
        assert root.relative(deep) == os.fsencode(Path(BAD_DIR) / "sub" / BAD_NAME)
        assert root.lstat(deep).st_size == 7
        fd = root.open_file(deep)
        try:
            assert os.read(fd, 100) == b"content"
        finally:
            os.close(fd)
        root.unlink(deep)
    assert not deep.exists() and deep.parent.is_dir()


#: Each component of in/a/b/c/clip.avi and the look-alike outside that replaces it.
LOOK_ALIKES = {"a": "", "a/b": "b", "a/b/c": "b/c", "a/b/c/clip.avi": "clip.avi"}


@pytest.mark.parametrize("depth", sorted(LOOK_ALIKES))
def test_a_symlink_at_any_depth_is_refused(tree: dict[str, Path], method: str,
                                           depth: str) -> None:
    """Each component in turn swapped for a link to a look-alike outside the input."""
    swapped = tree["in"] / depth
    os.rename(swapped, swapped.with_name(swapped.name + ".old"))
    swapped.symlink_to(tree["outside"] / LOOK_ALIKES[depth])
    assert tree["clip"].read_bytes().startswith(b"outside")  # by name it now leads outside
    steps = [InputRoot.open_file, InputRoot.unlink]
    if depth != "a/b/c/clip.avi":  # lstat does not follow the last component anyway
        steps.append(InputRoot.lstat)
    with InputRoot(tree["in"], method=method) as root:
        for step in steps:
            with pytest.raises(SymlinkRefused):
                step(root, tree["clip"])
        with pytest.raises(SymlinkRefused):
            move_out(root, tree["clip"], tree["in"].parent / "q", "x")
    assert outside_untouched(tree["outside"])
    assert swapped.is_symlink() and not (tree["in"].parent / "q" / "x").exists()


def test_parent_swapped_between_lookup_and_open(tree: dict[str, Path], method: str) -> None:
    """The file is found and stamped, then its grandparent becomes a link, then it is opened."""
    clip = tree["clip"]
    with InputRoot(tree["in"], method=method) as root:
        found = root.lstat(clip)  # lookup: a regular file beneath the root
        assert stat.S_ISREG(found.st_mode)
        swap_for_link(tree["in"] / "a" / "b", tree["outside"] / "b")
        assert clip.read_bytes().startswith(b"outside")  # a path-based open now goes outside
        with pytest.raises(SymlinkRefused):
            root.open_file(clip)
        with pytest.raises(SymlinkRefused):
            root.unlink(clip)
    assert outside_untouched(tree["outside"])


def test_special_files_are_refused_without_opening(tmp_path: Path, method: str) -> None:
    inp = tmp_path / "in"
    (inp / "dir.avi").mkdir(parents=True)
    os.mkfifo(inp / "pipe.avi")  # opening it for reading would block without a writer
    with InputRoot(inp, method=method) as root:
        for name in ("pipe.avi", "dir.avi"):
            with pytest.raises(NotRegularFile):
                root.open_file(inp / name)
            with pytest.raises(NotRegularFile):
                root.unlink(inp / name)
    assert stat.S_ISFIFO(os.lstat(inp / "pipe.avi").st_mode) and (inp / "dir.avi").is_dir()


def test_paths_not_beneath_the_root_are_refused(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.avi").write_bytes(b"x")
    with InputRoot(tmp_path / "in") as root:
        for p in (tmp_path / "other" / "x.avi", tmp_path / "in", tmp_path / "in" / ".." /
                  "other" / "x.avi", "/etc/passwd", tmp_path / "in" / "a\0b"):
            with pytest.raises(OutsideInput):
                root.open_file(p)


def test_relative_paths_are_taken_from_the_working_directory(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """As ``radiomicsd anonymise -i ../in`` gives them: the root and its files relative to the
    working directory, '..' collapsed lexically (never through a link)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "in" / "a.avi").write_bytes(b"a")
    monkeypatch.chdir(tmp_path / "sub")
    with InputRoot("../in") as root:
        assert root.relative("../in/a.avi") == b"a.avi"
        os.close(root.open_file(tmp_path / "in" / "a.avi"))
    monkeypatch.chdir(tmp_path)
    with InputRoot("in") as root:
        assert root.relative(Path("in") / "a.avi") == root.relative("in/x/../a.avi") == b"a.avi"
        with pytest.raises(OutsideInput):
            root.relative("in/../sub/a.avi")


def test_the_root_itself_may_not_be_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "in").symlink_to(tmp_path / "real")
    with pytest.raises(SymlinkRefused):
        InputRoot(tmp_path / "in")


def _seccomp_script(err: int) -> str:
    """Python source that makes openat2 fail with ``err`` for this thread, via a real seccomp
    filter, then reports what beneath does."""
    arch = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[platform.machine()]
    return textwrap.dedent(f"""
        import ctypes, os, sys, errno
        from pathlib import Path
        class Ins(ctypes.Structure):
            _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8),
                        ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]
        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Ins))]
        prog = (Ins * 6)(
            Ins(0x20, 0, 0, 4),             # A = seccomp_data.arch
            Ins(0x15, 0, 2, {arch}),        # other ABI: allow
            Ins(0x20, 0, 0, 0),             # A = seccomp_data.nr
            Ins(0x15, 1, 0, 437),           # openat2: errno
            Ins(0x06, 0, 0, 0x7FFF0000),    # SECCOMP_RET_ALLOW
            Ins(0x06, 0, 0, 0x00050000 | {err}))  # SECCOMP_RET_ERRNO
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
        fprog = Prog(len(prog), prog)
        assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()
        from radiomicsd.daemon import beneath
        inp = Path(sys.argv[1])
        print("available", beneath.openat2_available())
        with beneath.InputRoot(inp) as root:
            fd = root.open_file(inp / "a" / "b" / "c" / "clip.avi")
            print("read", os.read(fd, 100).decode())
            (inp / "a" / "b").rename(inp / "a" / "b.old")
            (inp / "a" / "b").symlink_to(inp.parent / "elsewhere" / "b")
            try:
                root.open_file(inp / "a" / "b" / "c" / "clip.avi")
            except beneath.SymlinkRefused:
                print("refused")
    """)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="BPF arch value")
@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM])
def test_openat2_blocked_by_seccomp_falls_back_to_the_walk(tree: dict[str, Path],
                                                           err: int) -> None:
    res = subprocess.run([sys.executable, "-c", _seccomp_script(err), str(tree["in"])],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:3] == ["available False", "read inside", "refused"]
    assert outside_untouched(tree["outside"])


# -- move_out -----------------------------------------------------------------------------------

def test_move_out_renames_with_private_modes(tmp_path: Path, umask022: None,
                                             method: str) -> None:
    src = tmp_path / "in" / BAD_DIR / BAD_NAME
    src.parent.mkdir(parents=True)
    src.write_bytes(b"payload")
    src.chmod(0o644)
    dest = tmp_path / "new" / "q"  # neither folder exists yet
    with InputRoot(tmp_path / "in", method=method) as root:
        got = move_out(root, src, dest, os.fsencode(Path("sub") / BAD_NAME))
    assert got == dest / "sub" / BAD_NAME and got.read_bytes() == b"payload"
    assert not src.exists()
    assert (mode_of(got), mode_of(dest / "sub"), mode_of(dest), mode_of(dest.parent)) == \
        (0o600, 0o700, 0o700, 0o700)


def test_move_out_keeps_the_mode_when_asked_and_never_overwrites(tmp_path: Path) -> None:
    src = tmp_path / "in" / "clip.avi"
    src.parent.mkdir()
    src.write_bytes(b"new")
    src.chmod(0o640)
    dest = tmp_path / "done"
    dest.mkdir()
    (dest / "clip.avi").write_bytes(b"earlier")
    with InputRoot(tmp_path / "in") as root:
        with pytest.raises(FileExistsError):
            move_out(root, src, dest, "clip.avi", mode=None)
        assert src.read_bytes() == b"new"
        got = move_out(root, src, dest, "clip.avi.2", mode=None)
    assert mode_of(got) == 0o640 and (dest / "clip.avi").read_bytes() == b"earlier"


def test_move_out_refuses_a_link_on_the_destination_side(tmp_path: Path) -> None:
    src = tmp_path / "in" / "clip.avi"
    src.parent.mkdir()
    src.write_bytes(b"x")
    (tmp_path / "done").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "done" / "ward").symlink_to(tmp_path / "elsewhere")
    with InputRoot(tmp_path / "in") as root, pytest.raises(OSError) as info:
        move_out(root, src, tmp_path / "done", "ward/clip.avi")
    assert info.value.errno == errno.ELOOP
    assert src.read_bytes() == b"x" and list((tmp_path / "elsewhere").iterdir()) == []


def test_move_out_across_file_systems_copies_then_unlinks(tmp_path: Path, tmpfs: Path,
                                                          umask022: None, method: str) -> None:
    """D5: rename gives EXDEV; the file is copied, fsync'ed, renamed, then the source goes."""
    data = os.urandom(3 * beneath.COPY_CHUNK + 17)
    src = tmp_path / "in" / BAD_DIR / BAD_NAME
    src.parent.mkdir(parents=True)
    src.write_bytes(data)
    with pytest.raises(OSError) as info:
        os.rename(src, tmpfs / "probe")
    assert info.value.errno == errno.EXDEV
    with InputRoot(tmp_path / "in", method=method) as root:
        got = move_out(root, src, tmpfs / "q", "q-1")
    assert got.read_bytes() == data and not src.exists()
    assert (mode_of(got), mode_of(tmpfs / "q")) == (0o600, 0o700)
    assert sorted(p.name for p in (tmpfs / "q").iterdir()) == ["q-1"]  # no temporary left


def test_move_out_across_file_systems_that_fails_leaves_the_source(tmp_path: Path,
                                                                   tmpfs: Path) -> None:
    """The 16 MiB tmpfs cannot take a 20 MiB file: ENOSPC, the input stays, nothing is left."""
    src = tmp_path / "in" / "big.avi"
    src.parent.mkdir()
    with open(src, "wb") as f:
        f.truncate(20 << 20)
    with InputRoot(tmp_path / "in") as root, pytest.raises(OSError) as info:
        move_out(root, src, tmpfs / "q", "q-1")
    assert info.value.errno == errno.ENOSPC
    assert src.stat().st_size == 20 << 20 and list((tmpfs / "q").iterdir()) == []


# -- D1: names that are not UTF-8 ---------------------------------------------------------------

def test_journal_path_key_of_a_non_utf8_name(tmp_path: Path) -> None:
    """Used to raise UnicodeEncodeError (str(path).encode()) and kill the daemon."""
    journal = SqliteJournal(tmp_path / "j.sqlite3", key=b"k" * 32)
    try:
        bad = tmp_path / "in" / BAD_NAME
        key = journal.path_key(bad)
        assert key == hmac.new(b"k" * 32, os.fsencode(bad), hashlib.sha256).hexdigest()
        assert key != journal.path_key(tmp_path / "in" / os.fsdecode(b"\xff\xfd bad.avi"))
        good = tmp_path / "in" / "Müller.avi"  # keys of UTF-8 names are what they were
        assert journal.path_key(good) == hmac.new(b"k" * 32, str(good).encode(),
                                                  hashlib.sha256).hexdigest()
    finally:
        journal.close()


def test_open_input_of_a_non_utf8_name(tmp_path: Path) -> None:
    src = tmp_path / BAD_DIR / BAD_NAME
    src.parent.mkdir()
    src.write_bytes(b"video bytes")
    opened = open_input(src)
    try:
        assert opened.digest == hashlib.sha256(b"video bytes").digest() and opened.size == 11
    finally:
        opened.close()


def test_decrypt_tmp_dir_is_created_private(tmp_path: Path, umask022: None) -> None:
    """decrypt_tmp_dir holds plaintext video: every folder made for it is 0700."""
    pyrage = pytest.importorskip("pyrage")
    ident = pyrage.x25519.Identity.generate()
    src = tmp_path / "in" / "v.avi.age"
    src.parent.mkdir()
    src.write_bytes(pyrage.encrypt(b"plain video", [ident.to_public()]))
    tmp = tmp_path / "secret" / "decrypt"
    opened = open_input(src, age_identity=ident, decrypt_tmp_dir=tmp)
    try:
        assert opened.encrypted and opened.digest == hashlib.sha256(b"plain video").digest()
        assert (mode_of(tmp_path / "secret"), mode_of(tmp)) == (0o700, 0o700)
        assert [mode_of(p) for p in tmp.iterdir()] == [0o600]
    finally:
        opened.close()
    assert list(tmp.iterdir()) == []


def test_quarantine_note_of_a_non_utf8_path_is_valid_utf8_json(tmp_path: Path) -> None:
    """record_paths: the note used to hold lone surrogates ("\\udcff"), which strict JSON
    readers reject; now a readable text plus the exact bytes in hex."""
    src = tmp_path / "in" / BAD_NAME
    src.parent.mkdir()
    src.write_bytes(b"refused")
    (tmp_path / "q").mkdir()
    target = quarantine_input(src, tmp_path / "q", {"reason": "truncated", "path": str(src)})
    raw = target.with_name(target.name + ".json").read_bytes()
    note = json.loads(raw.decode("utf-8", "strict"))
    json.dumps(note, ensure_ascii=False).encode("utf-8", "strict")  # no lone surrogate
    assert note["path"] == path_text(src) and note["path"].endswith("\\xff\\xfe bad.avi")
    assert bytes.fromhex(note["path_hex"]) == os.fsencode(src)
    assert target.read_bytes() == b"refused"


# -- D2: a parent folder swapped for a link ------------------------------------------------------

def test_open_input_old_call_form_after_the_parent_became_a_link(tree: dict[str, Path]) -> None:
    """``open_input(path)`` as the daemon calls it today: the folder holding the file is a
    link by the time the worker opens it. It used to read the file outside the input."""
    swap_for_link(tree["in"] / "a" / "b" / "c", tree["outside"] / "b" / "c")
    with pytest.raises(SymlinkRefused):
        open_input(tree["clip"]).close()


def test_open_input_with_the_root_refuses_a_link_at_any_depth(tree: dict[str, Path],
                                                              method: str) -> None:
    with InputRoot(tree["in"], method=method) as root:
        opened = open_input(tree["clip"], root=root)
        assert opened.digest == hashlib.sha256(b"inside").digest()
        opened.close()
        swap_for_link(tree["in"] / "a", tree["outside"])
        with pytest.raises(SymlinkRefused):
            open_input(tree["clip"], root=root).close()


@pytest.mark.parametrize("policy", ["delete", "move"])
def test_dispose_after_a_parent_became_a_link_touches_nothing_outside(
        tree: dict[str, Path], tmp_path: Path, policy: str) -> None:
    """on_success: delete used to remove the file outside the input."""
    swap_for_link(tree["in"] / "a", tree["outside"])
    with pytest.raises(OSError) as info:
        dispose_input(tree["clip"], policy, tree["in"], tmp_path / "done")
    assert info.value.errno == errno.ELOOP
    assert outside_untouched(tree["outside"])
    assert (tree["in"] / "a.old" / "b" / "c" / "clip.avi").read_bytes() == b"inside"


def test_quarantine_aimed_at_the_state_folder_moves_nothing(tmp_path: Path) -> None:
    """A file named pseudonym.key waits in in/ward/; ward becomes a link to state/; it used to
    move the daemon's key into the quarantine."""
    state, inp, qdir = tmp_path / "state", tmp_path / "in", tmp_path / "q"
    state.mkdir()
    qdir.mkdir()
    (state / "pseudonym.key").write_bytes(b"secret key")
    (inp / "ward").mkdir(parents=True)
    (inp / "ward" / "pseudonym.key").write_bytes(b"garbage")
    swap_for_link(inp / "ward", state)
    target = quarantine_input(inp / "ward" / "pseudonym.key", qdir, {"reason": "garbage"})
    assert (state / "pseudonym.key").read_bytes() == b"secret key"
    assert not target.exists()
    assert json.loads(target.with_name(target.name + ".json").read_text()) == \
        {"reason": "garbage"}
    with InputRoot(inp) as root:  # the same with the root passed in, two levels down
        (inp / "x" / "y").mkdir(parents=True)
        (inp / "x" / "y" / "pseudonym.key").write_bytes(b"garbage")
        swap_for_link(inp / "x", tmp_path)
        (tmp_path / "y").symlink_to(state)
        quarantine_input(inp / "x" / "y" / "pseudonym.key", qdir, {"reason": "r"}, root=root)
    assert (state / "pseudonym.key").read_bytes() == b"secret key"
    assert sorted(p.suffix for p in qdir.iterdir()) == [".json", ".json"]


def test_quarantine_leaves_a_symlink_where_it_is(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.avi"
    outside.write_bytes(b"outside")
    link = tmp_path / "in" / "link.avi"
    link.parent.mkdir()
    link.symlink_to(outside)
    (tmp_path / "q").mkdir()
    target = quarantine_input(link, tmp_path / "q", {"reason": "symlink_refused"})
    assert link.is_symlink() and not os.path.lexists(target)
    assert outside.read_bytes() == b"outside"
    assert [p.name for p in (tmp_path / "q").iterdir()] == [target.name + ".json"]


# -- D5 and modes: quarantine and done on another file system ------------------------------------

def test_quarantine_on_another_file_system(tmp_path: Path, tmpfs: Path, umask022: None) -> None:
    """quarantine_dir on a tmpfs: os.replace gave 'Invalid cross-device link', the file stayed
    in the input and no note was written."""
    src = tmp_path / "in" / "DOE_JANE.avi"
    src.parent.mkdir()
    src.write_bytes(b"refused bytes")
    src.chmod(0o644)
    qdir = tmpfs / "quarantine"
    qdir.mkdir()  # as the daemon made it at start
    target = quarantine_input(src, qdir, {"reason": "truncated"})
    assert not src.exists() and target.read_bytes() == b"refused bytes"
    note = target.with_name(target.name + ".json")
    assert json.loads(note.read_text()) == {"reason": "truncated"}
    assert (mode_of(target), mode_of(note)) == (0o600, 0o600)


def test_quarantine_modes_on_the_same_file_system(tmp_path: Path, umask022: None) -> None:
    src = tmp_path / "in" / "x.avi"
    src.parent.mkdir()
    src.write_bytes(b"x")
    src.chmod(0o644)
    target = quarantine_input(src, tmp_path / "q", {"reason": "r"})
    note = target.with_name(target.name + ".json")
    assert (mode_of(tmp_path / "q"), mode_of(target), mode_of(note)) == (0o700, 0o600, 0o600)


def test_done_move_on_another_file_system(tmp_path: Path, tmpfs: Path, umask022: None) -> None:
    in_dir = tmp_path / "in"
    src = in_dir / "ward" / BAD_NAME
    src.parent.mkdir(parents=True)
    src.write_bytes(b"first")
    went = dispose_input(src, "move", in_dir, tmpfs / "done")
    assert went == tmpfs / "done" / "ward" / BAD_NAME and went.read_bytes() == b"first"
    assert not src.exists()
    assert (mode_of(tmpfs / "done"), mode_of(tmpfs / "done" / "ward")) == (0o700, 0o700)
    src.write_bytes(b"second")
    again = dispose_input(src, "move", in_dir, tmpfs / "done")
    assert again != went and again.read_bytes() == b"second" and went.read_bytes() == b"first"


# -- end to end: the real CLI and daemon --------------------------------------------------------

def test_cli_non_utf8_names_are_processed_without_a_traceback(clip_factory,
                                                              tmp_path: Path) -> None:
    clip = clip_factory("plain.avi", 8).path.read_bytes()
    inp = tmp_path / "in"
    (inp / BAD_DIR).mkdir(parents=True)
    (inp / BAD_NAME).write_bytes(clip)
    (inp / BAD_DIR / BAD_NAME).write_bytes(variant(clip, "second"))
    (inp / BAD_DIR / os.fsdecode(b"\xfa.avi")).write_bytes(b"no video at all")
    for extra in ((), ("--show-paths",)):
        out = tmp_path / f"out{len(extra)}"
        res = run_radiomicsd("anonymise", "-i", inp, "-o", out, "--state", tmp_path / "st",
                             "--select", "all", *extra)
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stderr and "UnicodeEncodeError" not in res.stderr
        assert "processed 2" in res.stdout and "unreadable_container" in res.stdout
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == \
            sorted([cli_pseudonym(clip), cli_pseudonym(variant(clip, "second"))])
        if not extra:
            assert "bad.avi" not in res.stdout + res.stderr


def test_cli_symlinked_folder_inside_the_input_is_not_followed(clip_factory,
                                                               tmp_path: Path) -> None:
    clip = clip_factory("plain.avi", 8).path.read_bytes()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.avi").write_bytes(variant(clip, "outside"))
    inp = tmp_path / "in"
    (inp / "ward").mkdir(parents=True)
    (inp / "ward" / "own.avi").write_bytes(clip)
    (inp / "linked").symlink_to(outside, target_is_directory=True)
    res = run_radiomicsd("anonymise", "-i", inp, "-o", tmp_path / "out", "--state",
                         tmp_path / "st", "--select", "all")
    assert res.returncode == 1, res.stderr
    assert "symlink_refused" in res.stdout and "Traceback" not in res.stderr
    assert [p.name for p in (tmp_path / "out").iterdir() if p.is_dir()] == [cli_pseudonym(clip)]
    assert (outside / "secret.avi").read_bytes() == variant(clip, "outside")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "d", settle_seconds=2.0, on_success="delete", select="all")
    yield d
    d.close()


def test_watch_non_utf8_name_does_not_kill_the_daemon(daemon: Daemon, clip_factory) -> None:
    """The start-up scan used to die in Journal.path_key with UnicodeEncodeError."""
    clip = clip_factory("plain.avi", 8).path.read_bytes()
    (daemon.input / BAD_DIR).mkdir()
    (daemon.input / BAD_DIR / BAD_NAME).write_bytes(clip)
    daemon.start()
    daemon.wait_event("video.done")
    assert daemon.stop() == 0
    assert set(daemon.outputs()) == {pseudonym_of(clip)}
    assert not (daemon.input / BAD_DIR / BAD_NAME).exists()  # on_success: delete
    assert "Traceback" not in daemon.log_text()


def test_watch_parent_swapped_for_a_link_while_the_file_waits(daemon: Daemon, clip_factory,
                                                              tmp_path: Path) -> None:
    """The file is found by the start-up scan; before it settles its folder becomes a link to a
    folder outside. It used to export that outside file and then delete it (on_success)."""
    clip = clip_factory("plain.avi", 8).path.read_bytes()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = variant(clip, "outside")
    (outside / "clip.avi").write_bytes(secret)
    (daemon.input / "ward").mkdir()
    (daemon.input / "ward" / "clip.avi").write_bytes(clip)
    daemon.start()  # ready: the scan has noted in/ward/clip.avi, which settles in 2 s
    swap_for_link(daemon.input / "ward", outside)
    daemon.wait_event("video.refused")
    daemon.wait_event("video.done")  # the real file, found again under ward.old/
    assert daemon.stop() == 0
    assert (outside / "clip.avi").read_bytes() == secret
    assert pseudonym_of(secret) not in daemon.outputs()
    assert set(daemon.outputs()) == {pseudonym_of(clip)}
    assert (daemon.input / "ward").is_symlink()
    assert {e["reason"] for e in daemon.events("video.refused")} == {"symlink_refused"}


def test_watch_grandparent_swapped_for_a_link_while_the_file_waits(daemon: Daemon, clip_factory,
                                                                   tmp_path: Path) -> None:
    """As above, two levels up: only the input folder's root, not the file's own folder,
    sees a link there."""
    clip = clip_factory("plain.avi", 8).path.read_bytes()
    outside = tmp_path / "elsewhere"
    (outside / "ward").mkdir(parents=True)
    secret = variant(clip, "outside")
    (outside / "ward" / "clip.avi").write_bytes(secret)
    (daemon.input / "site" / "ward").mkdir(parents=True)
    (daemon.input / "site" / "ward" / "clip.avi").write_bytes(clip)
    daemon.start()
    swap_for_link(daemon.input / "site", outside)
    daemon.wait_event("video.done")  # the real file, found again under site.old/
    daemon.wait_event("video.refused")
    assert daemon.stop() == 0
    assert pseudonym_of(secret) not in daemon.outputs()
    assert (outside / "ward" / "clip.avi").read_bytes() == secret
