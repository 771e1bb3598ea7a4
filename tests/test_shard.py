"""Sharded batches (daemon/shard.py): ``--shard I/N`` and ``auto/N`` as a Kubernetes Indexed
Job's pods run them, in parallel real processes over one input and one output folder; and the
Job manifest validated against the Kubernetes schemas (kubernetes-validate)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, cli_env
from test_anonymise import outputs

from radiomicsd.daemon.shard import INDEX_ENV, Shard, parse_shard
from radiomicsd.pipeline.errors import ConfigError, OutputUnavailable


@pytest.mark.parametrize("text, env, shard", [
    ("0/1", {}, Shard(0, 1)), ("3/4", {}, Shard(3, 4)), ("auto/4", {INDEX_ENV: "2"}, Shard(2, 4)),
])
def test_parse(text, env, shard):
    assert parse_shard(text, env) == shard


@pytest.mark.parametrize("text, env", [("4/4", {}), ("1", {}), ("auto/2", {}),
                                       ("auto/2", {INDEX_ENV: "x"}), ("-1/2", {})])
def test_parse_refuses(text, env):
    with pytest.raises(ConfigError):
        parse_shard(text, env)


def test_shards_partition_digests():
    digests = [f"{i:064x}" for i in range(0, 2**20, 7919)]
    for n in range(1, 5):
        owners = [[s for s in range(n) if Shard(s, n).owns(d)] for d in digests]
        assert all(len(o) == 1 for o in owners)


@pytest.fixture(scope="module")
def archive(clip_factory, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    for i in range(8):
        clip = clip_factory(f"c{i}.avi", 4, seed=i)
        (folder / f"c{i}.avi").write_bytes(clip.path.read_bytes())
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_n_parallel_shards_cover_every_input_exactly_once(archive, tmp_path, n):
    out = tmp_path / "out"
    procs = []
    for index in range(n):
        env = cli_env(**{INDEX_ENV: str(index)})
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "radiomicsd", "anonymise", "-i", str(archive), "-o",
             str(out), "--state", str(tmp_path / f"state{index}"), "--select", "all",
             "--shard", f"auto/{n}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    done = 0
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        done += int(re.search(r"processed (\d+)", stdout).group(1))
        others = re.search(r"skipped\s+other_shard\s+(\d+)", stdout)
        assert (int(others.group(1)) if others else 0) == 8 - int(
            re.search(r"processed (\d+)", stdout).group(1))
    assert done == 8
    assert len(outputs(out)) == 8  # every input once, none twice, no staging left


def test_a_daemon_cannot_share_the_output_of_running_shards(tmp_path):
    from radiomicsd.daemon.output import OutputFolder

    with OutputFolder(tmp_path, shared=True), OutputFolder(tmp_path, shared=True), \
            pytest.raises(ConfigError):
        OutputFolder(tmp_path)


def test_an_output_folder_made_again_is_another_folder_even_on_its_old_inode(tmp_path):
    from radiomicsd.daemon.output import LOCK_NAME, OutputFolder

    out = tmp_path / "out"
    with OutputFolder(out) as first:
        identity = first.identity
        first.check()
    shutil.rmtree(out)
    out.mkdir()  # ext4 gives a just freed inode out again: often the same number
    with OutputFolder(out) as second:
        assert second.identity != identity
        assert second.identity.rsplit(":", 1)[0] == f"{out.stat().st_dev}:{out.stat().st_ino}"
        shutil.rmtree(out)
        out.mkdir()
        (out / LOCK_NAME).write_text("another")
        with pytest.raises(OutputUnavailable, match="replaced"):
            second.check()
    # a lock file of a version before tokens is given one, and keeps it
    (out / LOCK_NAME).write_text("")
    with OutputFolder(out) as third:
        assert len(third.identity.rsplit(":", 1)[1]) == 32
    with OutputFolder(out) as fourth:
        assert fourth.identity == third.identity
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no temporary file left


def test_the_indexed_job_manifest_is_valid_kubernetes():
    tool = Path(sys.executable).parent / "kubernetes-validate"
    manifests = sorted((REPO / "deploy" / "k8s").glob("*.yaml"))
    proc = subprocess.run([str(tool), "--strict", "-k", "1.33.0", *map(str, manifests)],
                          capture_output=True, text=True, timeout=120, env=os.environ)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = (REPO / "deploy" / "k8s" / "anonymise-job.yaml").read_text()
    assert "completionMode: Indexed" in job and "backoffLimitPerIndex" in job
    completions = int(re.search(r"completions: (\d+)", job).group(1))
    assert f'"auto/{completions}"' in job  # the Job's N and the shard count agree
