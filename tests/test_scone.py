"""The SCONE kit: session rendering and checks, schema, Dockerfiles, scripts, manifests.

Everything here runs without SGX, CAS or a SCONE registry account: the scone and docker
command-line tools are replaced by small stubs that behave like them on the surface
(`scone fspf encrypt` prints "... tag: T key: K"), so the scripts' own logic is tested.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import install_wheel
from pyrage import x25519

from radiomicsd import scone
from radiomicsd.daemon.settings import load_settings
from radiomicsd.pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCONE_DIR = REPO / "scone"
SCRIPTS = SCONE_DIR / "scripts"
BIN = Path(sys.executable).parent
SCHEMA = json.loads((SCONE_DIR / "session.schema.json").read_text())

KEY = "5e" * 32
TAG = "7a" * 16
INPUT_KEY = "c3" * 32
INPUT_TAG = "d4" * 16
MRENCLAVE = "ab" * 32
OTHER_MRENCLAVE = "cd" * 32


def keytag_line(key: str, tag: str, name: str = "/fspf/fspf.pb") -> str:
    return f"Encrypted file system protection file {name} AES-GCM tag: {tag} key: {key}\n"


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, object]:
    identity = x25519.Identity.generate()
    return {
        "keytag": private_file(tmp_path / "image.keytag", keytag_line(KEY, TAG)),
        "input_keytag": private_file(tmp_path / "batch.keytag",
                                     keytag_line(INPUT_KEY, INPUT_TAG, "volume.fspf")),
        "age": private_file(tmp_path / "age.txt",
                            f"# created: 2024-01-01\n# public key: {identity.to_public()}\n"
                            f"{identity}\n"),
        "identity": str(identity),
        "recipient": str(identity.to_public()),
        "out": tmp_path / "session.yml",
    }


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="radiomicsd scone render-session")
    scone.add_arguments(parser)
    return parser.parse_args(argv)


def prod_argv(inputs: dict[str, object], *extra: str) -> list[str]:
    return ["--name", "radiomicsd", "--mrenclave", MRENCLAVE, "--fspf-keytag",
            str(inputs["keytag"]), "--age-identity-file", str(inputs["age"]),
            "-o", str(inputs["out"]), *extra]


def render(inputs: dict[str, object], *extra: str, dev: bool = False) -> dict:
    argv = prod_argv(inputs, *extra) + (["--dev"] if dev else [])
    assert scone.run(parse(argv)) == 0
    return yaml.safe_load(Path(inputs["out"]).read_text())


# --------------------------------------------------------------------------- rendering


def test_render_session_fills_placeholders_and_keeps_scone_references() -> None:
    template = 'name: "{{ name }}"\nenv: "$$SCONE::key:hex$$"\n'
    assert scone.render_session(template, {"name": "s1"}) == (
        'name: "s1"\nenv: "$$SCONE::key:hex$$"\n')


def test_render_session_names_every_missing_value() -> None:
    with pytest.raises(scone.SessionError, match=r"placeholder\(s\): alpha, beta"):
        scone.render_session("a: {{ beta }}\nb: {{ alpha }} {{ given }}\n", {"given": "x"})


def test_render_session_blocks_follow_values() -> None:
    template = "a: 1\n# {{ if extra }}\nb: {{ extra }}\n# {{ end }}\nc: 3\n"
    assert scone.render_session(template, {"extra": "2"}) == "a: 1\nb: 2\nc: 3\n"
    # A dropped block needs no values for its placeholders.
    assert scone.render_session(template, {}) == "a: 1\nc: 3\n"


@pytest.mark.parametrize("template", [
    "# {{ if a }}\n# {{ if b }}\n# {{ end }}\n# {{ end }}\n",
    "# {{ if a }}\nx: 1\n",
    "x: 1\n# {{ end }}\n",
])
def test_render_session_rejects_unbalanced_blocks(template: str) -> None:
    with pytest.raises(scone.SessionError, match="block|end"):
        scone.render_session(template, {"a": "1", "b": "1"})


def test_render_session_indents_block_values_and_refuses_multiline_inline() -> None:
    template = "content: |\n    {{ body }}\nnext: {{ one }}\n"
    text = scone.render_session(template, {"body": "k: 1\n\nj: 2", "one": "x"})
    assert text == "content: |\n    k: 1\n\n    j: 2\nnext: x\n"
    assert yaml.safe_load(text)["content"] == "k: 1\n\nj: 2\n"
    with pytest.raises(scone.SessionError, match="one line"):
        scone.render_session(template, {"body": "", "one": "x\ny"})


@pytest.mark.parametrize("value", ["{{ other }}", "a }} b", "$$SCONE::stolen$$"])
def test_render_session_refuses_values_that_inject_syntax(value: str) -> None:
    with pytest.raises(scone.SessionError, match="contains template"):
        scone.render_session("a: {{ v }}\n", {"v": value})


def test_render_session_refuses_malformed_placeholders() -> None:
    with pytest.raises(scone.SessionError, match="malformed placeholder"):
        scone.render_session("a: {{ not-a-name }}\n", {})


# ------------------------------------------------------------------- rendered sessions


@pytest.mark.parametrize("extra", [(), ("--input-volume", "batch-in")])
def test_production_session_is_valid_and_strict(inputs: dict[str, object],
                                                extra: tuple[str, ...]) -> None:
    argv = list(extra)
    if extra:
        argv += ["--input-keytag", str(inputs["input_keytag"])]
    doc = render(inputs, *argv)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert scone.check_session(doc, dev=False) == []
    services = {s["name"]: s for s in doc["services"]}
    assert set(services) == ({"watch", "batch"} if extra else {"watch"})
    watch = services["watch"]
    assert watch["command"].split()[:5] == [
        "python3", "-B", "/opt/radiomicsd/app/bin/radiomicsd", "watch", "-c"]
    assert watch["attestation"] == {"mrenclave": [MRENCLAVE]}
    assert (watch["fspf_path"], watch["fspf_key"], watch["fspf_tag"]) == (
        "/fspf/fspf.pb", KEY, TAG)
    assert watch["environment"]["RADIOMICSD_AGE_IDENTITY"] == "$$SCONE::age_identity$$"
    assert watch["environment"]["RADIOMICSD_PSEUDONYM_KEY"] == "$$SCONE::pseudonym_key:hex$$"
    assert watch["environment"]["SCONE_ALLOW_DLOPEN"] == "1"
    assert doc["security"]["attestation"] == {"mode": "hardware", "tolerate": []}
    secrets = {s["name"]: s for s in doc["secrets"]}
    assert secrets["pseudonym_key"] == {"name": "pseudonym_key", "kind": "binary", "size": 32}
    assert secrets["age_identity"]["value"] == inputs["identity"]
    assert secrets["age_recipient"] == {"name": "age_recipient", "kind": "ascii",
                                        "value": inputs["recipient"], "export_public": True}
    volumes = {v["name"]: v for v in doc["volumes"]}
    # Output and state are CAS-initialised: no key or tag in the session.
    assert volumes["radiomicsd-output"] == {"name": "radiomicsd-output"}
    assert volumes["radiomicsd-state"] == {"name": "radiomicsd-state"}
    if extra:
        assert volumes["batch-in"] == {"name": "batch-in", "fspf_key": INPUT_KEY,
                                       "fspf_tag": INPUT_TAG}
    else:
        assert "batch-in" not in volumes


def test_injection_files_carry_config_and_attestation_marker(
        inputs: dict[str, object]) -> None:
    doc = render(inputs, "--cas-namespace", "hospital/echo")
    assert doc["name"] == "hospital/echo/radiomicsd"
    files = {f["path"]: f["content"] for f in doc["images"][0]["injection_files"]}
    assert files["/run/radiomicsd/attested"] == "hospital/echo/radiomicsd"
    injected = yaml.safe_load(files["/etc/radiomicsd/config.yml"])
    assert injected == yaml.safe_load((SCONE_DIR / "config.enclave.yml").read_text())
    mounts = {m["path"]: m["name"] for m in doc["images"][0]["volumes"]}
    assert mounts == {"/var/lib/radiomicsd/output": "radiomicsd-output",
                      "/var/lib/radiomicsd/state": "radiomicsd-state"}


def test_scone_references_stay_literal_and_resolve(inputs: dict[str, object]) -> None:
    render(inputs)
    text = Path(inputs["out"]).read_text()
    assert '"$$SCONE::age_identity$$"' in text
    assert '"$$SCONE::pseudonym_key:hex$$"' in text
    doc = yaml.safe_load(text)
    names = {s["name"] for s in doc["secrets"]}
    assert set(scone.scone_references(doc)) == {"age_identity", "pseudonym_key"} <= names


def test_development_session_tolerates_debugging_explicitly(
        inputs: dict[str, object]) -> None:
    doc = render(inputs, dev=True)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert scone.check_session(doc, dev=True) == []
    attestation = doc["security"]["attestation"]
    assert {"debug-mode", "outdated-tcb"} <= set(attestation["tolerate"])
    assert attestation["ignore_advisories"] == "*"
    assert doc["services"][0]["environment"]["SCONE_ALLOW_DLOPEN"] == "2"
    # The same checks without the development allowance refuse it.
    problems = " ".join(scone.check_session(doc, dev=False))
    for expected in ("debug-mode", "'*'", "SCONE_ALLOW_DLOPEN=2", "no code FSPF"):
        assert expected in problems


def test_dev_and_prod_templates_differ_only_in_debug_settings(
        inputs: dict[str, object]) -> None:
    extra = ("--input-volume", "batch-in", "--input-keytag", str(inputs["input_keytag"]))
    prod, dev = render(inputs, *extra), render(inputs, *extra, dev=True)
    for doc in (prod, dev):
        doc.pop("security")
        for service in doc["services"]:
            service["environment"].pop("SCONE_ALLOW_DLOPEN")
            for key in ("fspf_path", "fspf_key", "fspf_tag"):
                service.pop(key, None)
    assert prod == dev


def test_check_session_reports_dangling_references_and_broken_links(
        inputs: dict[str, object]) -> None:
    doc = render(inputs)
    broken = copy.deepcopy(doc)
    broken["services"][0]["environment"]["X"] = "$$SCONE::nowhere$$"
    broken["services"][0]["environment"]["Y"] = "$$SCONE::unterminated"
    broken["services"][0]["image_name"] = "ghost"
    broken["images"][0]["volumes"].append({"name": "undeclared", "path": "/x"})
    broken["secrets"].append({"name": "pseudonym_key", "kind": "ascii"})
    broken["services"][0]["attestation"] = {"mrenclave": []}
    problems = "\n".join(scone.check_session(broken, dev=False))
    for expected in ("$$SCONE::nowhere$$ refers to no secret", "malformed",
                     "undeclared image 'ghost'", "undeclared volume 'undeclared'",
                     "'pseudonym_key' is defined more than once", "no MRENCLAVE"):
        assert expected in problems
    disabled = copy.deepcopy(doc)
    disabled["security"]["attestation"]["mode"] = "none"
    assert "disables attestation" in " ".join(scone.check_session(disabled, dev=False))


def test_schema_rejects_typos_and_bad_values(inputs: dict[str, object]) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    doc = render(inputs)
    bad_cases = [
        ("services", 0, "mrenclaves_typo"),
        ("services", 0, "fspf_tag"),
        ("security", "attestation", "tolerate"),
    ]
    for top, index, key in bad_cases:
        mutated = copy.deepcopy(doc)
        if key == "mrenclaves_typo":
            mutated[top][index]["mrenclves"] = [MRENCLAVE]
        elif key == "fspf_tag":
            mutated[top][index]["fspf_tag"] = "not-hex"
        else:
            mutated[top][index][key] = ["debug"]
        assert not validator.is_valid(mutated), key


def test_shipped_production_files_hold_no_debug_allowances() -> None:
    def active(path: Path) -> str:
        lines = path.read_text().splitlines()
        return "\n".join(line for line in lines if not line.lstrip().startswith("#"))

    template = active(SCONE_DIR / "session.template.yaml")
    assert "debug-mode" not in template and "ignore_advisories" not in template
    assert 'SCONE_ALLOW_DLOPEN: "2"' not in template
    dockerfile = active(SCONE_DIR / "Dockerfile")
    assert "SCONE_ALLOW_DLOPEN=2" not in dockerfile and "SCONE_ALLOW_DLOPEN=1" in dockerfile
    assert "SCONE_MODE=HW" in dockerfile and "AUTO" not in dockerfile
    dev = active(SCONE_DIR / "Dockerfile.dev")
    assert "SCONE_ALLOW_DLOPEN=2" in dev and "SCONE_MODE=HW" in dev


# ---------------------------------------------------------------------- run() and inputs


def test_run_writes_private_file_and_never_prints_secrets(
        inputs: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    argv = prod_argv(inputs, "--mrenclave", OTHER_MRENCLAVE.upper(), "--input-volume", "b",
                     "--input-keytag", str(inputs["input_keytag"]))
    assert scone.run(parse(argv)) == 0
    out = Path(inputs["out"])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = yaml.safe_load(out.read_text())
    assert doc["services"][0]["attestation"]["mrenclave"] == [MRENCLAVE, OTHER_MRENCLAVE]
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    for secret in (KEY, INPUT_KEY, inputs["identity"]):
        assert secret not in printed
    assert inputs["recipient"] in captured.err and "radiomicsd/watch" in captured.err


def test_run_imports_the_age_identity_from_another_session(
        inputs: dict[str, object]) -> None:
    argv = ["--name", "r", "--mrenclave", MRENCLAVE, "--fspf-keytag", str(inputs["keytag"]),
            "--age-identity-from-session", "data-owner/keys", "-o", str(inputs["out"])]
    assert scone.run(parse(argv)) == 0
    doc = yaml.safe_load(Path(inputs["out"]).read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["secrets"][1] == {"name": "age_identity", "kind": "ascii", "import": {
        "session": "data-owner/keys", "secret": "age_identity"}}
    assert "age_recipient" not in {s["name"] for s in doc["secrets"]}


def usage_cases(inputs: dict[str, object], tmp_path: Path) -> list[tuple[list[str], str]]:
    loose = tmp_path / "loose.keytag"
    loose.write_text(keytag_line(KEY, TAG))
    loose.chmod(0o644)
    garbage = private_file(tmp_path / "garbage.keytag", "tag: 12 key: 34\n")
    no_age = ["--name", "r", "--mrenclave", MRENCLAVE, "--fspf-keytag", str(inputs["keytag"]),
              "-o", str(inputs["out"])]
    return [
        (prod_argv(inputs, "--fspf-keytag", str(loose)), "readable by group or others"),
        (prod_argv(inputs, "--fspf-keytag", str(garbage)), "exactly one 'tag:"),
        (prod_argv(inputs, "--fspf-keytag", str(tmp_path / "none")), "No such file"),
        (prod_argv(inputs, "--mrenclave", "xyz"), "--mrenclave: expected 64 hex"),
        (prod_argv(inputs, "--name", "bad name"), "--name: expected"),
        (prod_argv(inputs, "--input-volume", "b"), "go together"),
        (prod_argv(inputs, "--output-volume", "radiomicsd-state"), "must differ"),
        (prod_argv(inputs, "--template", str(tmp_path / "none.yaml")), "--template"),
        (prod_argv(inputs, "--session-version", "0.2"), "--session-version"),
        (no_age, "exactly one of --age-identity-file"),
        (["--name", "r", "--mrenclave", MRENCLAVE, "--age-identity-file", str(inputs["age"]),
          "-o", str(inputs["out"])], "--fspf-keytag FILE is required"),
        (["--name", "r", "--fspf-keytag", str(inputs["keytag"]), "--age-identity-file",
          str(inputs["age"]), "-o", str(inputs["out"])], "at least one --mrenclave"),
    ]


def test_run_usage_errors_exit_2_with_a_clear_message(
        inputs: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in usage_cases(inputs, tmp_path):
        assert scone.run(parse(argv)) == 2, message
        err = capsys.readouterr().err
        assert "render-session: error:" in err and message.split()[0] in err, (message, err)
        assert KEY not in err and str(inputs["identity"]) not in err
    assert not Path(inputs["out"]).exists()


def test_run_refuses_a_template_that_breaks_production_rules(
        inputs: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lax = (SCONE_DIR / "session.template.yaml").read_text().replace(
        "tolerate: []", "tolerate: [debug-mode]")
    template = tmp_path / "lax.yaml"
    template.write_text(lax)
    assert scone.run(parse(prod_argv(inputs, "--template", str(template)))) == 2
    assert "tolerates debug-mode" in capsys.readouterr().err


def test_parsers_for_keytag_and_age_identity(inputs: dict[str, object]) -> None:
    parsed = scone.parse_keytag(keytag_line(KEY.upper(), TAG))
    assert (parsed.key, parsed.tag) == (KEY, TAG)
    assert KEY not in repr(parsed)
    with pytest.raises(scone.SessionError):
        scone.parse_keytag(keytag_line(KEY, TAG) * 2)
    text = Path(inputs["age"]).read_text()
    assert scone.parse_age_identity(text) == inputs["identity"]
    assert scone.age_recipient(inputs["identity"]) == inputs["recipient"]
    with pytest.raises(scone.SessionError):
        scone.parse_age_identity(text + text)
    with pytest.raises(scone.SessionError):
        scone.age_recipient("AGE-SECRET-KEY-1" + "Q" * 58)


def test_load_session_errors_hide_the_content() -> None:
    with pytest.raises(scone.SessionError, match=r"at line \d+, column \d+") as caught:
        scone.load_session(f"a: 1\nkey: [{KEY}\n")
    assert KEY not in str(caught.value)


def cas_substitute(text: str, doc: dict, generated: dict[str, bytes]) -> str:
    """What CAS does after attestation: replace each $$SCONE::name[:format]$$ by its value."""
    secrets = {s["name"]: s for s in doc["secrets"]}

    def value(match: re.Match[str]) -> str:
        secret = secrets[match.group(1)]
        if secret["kind"] == "binary":
            raw = generated.setdefault(secret["name"], os.urandom(secret["size"]))
            assert match.group(2) == ":hex", "binary secrets need :hex in the environment"
            return raw.hex()
        return secret["value"]

    return re.sub(r"\$\$SCONE::([^$:]+)((?::\w+)*)\$\$", value, text)


def test_session_gives_the_daemon_what_its_attestation_check_needs(
        inputs: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radiomicsd.daemon.keys import check_attestation, load_age_identity, load_pseudonym_key

    doc = render(inputs)
    generated: dict[str, bytes] = {}
    environment = {name: cas_substitute(v, doc, generated)
                   for name, v in doc["services"][0]["environment"].items()}
    files = {f["path"]: f["content"] for f in doc["images"][0]["injection_files"]}
    marker = tmp_path / "attested"
    marker.write_text(files["/run/radiomicsd/attested"])
    injected = yaml.safe_load(cas_substitute(files["/etc/radiomicsd/config.yml"], doc, generated))
    injected["attestation_marker"] = str(marker)
    config_file = tmp_path / "config.yml"
    config_file.write_text(yaml.safe_dump(injected))
    for name in list(os.environ):
        if name.startswith("RADIOMICSD_"):
            monkeypatch.delenv(name)
    for name, v in environment.items():
        monkeypatch.setenv(name, v)
    settings = load_settings(config_file)
    check_attestation(settings.attestation_marker)
    key, source = load_pseudonym_key(key_file=settings.pseudonym_key_file,
                                     state_dir=settings.state_dir, allow_generate=False)
    assert (key, source) == (generated["pseudonym_key"], "env")
    assert str(load_age_identity(settings.age.identity_file)) == inputs["identity"]
    marker.unlink()
    with pytest.raises(ConfigError, match="not attested"):
        check_attestation(settings.attestation_marker)


# ------------------------------------------------------------------ images and manifests


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.dev"])
def test_hadolint_is_clean(dockerfile: str) -> None:
    result = subprocess.run([str(BIN / "hadolint"), str(SCONE_DIR / dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_is_clean_and_scripts_are_strict() -> None:
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert len(scripts) >= 5
    result = subprocess.run([str(BIN / "shellcheck"), *map(str, scripts)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for script in scripts:
        text = script.read_text()
        assert "set -euo pipefail" in text and "set -x" not in text, script.name
        assert os.access(script, os.X_OK), script.name


def test_enclave_config_matches_the_enclave_constraints() -> None:
    config = yaml.safe_load((SCONE_DIR / "config.enclave.yml").read_text())
    assert config["enclave_mode"] is True and config["require_attestation"] is True
    assert config["observer"] == "polling" and config["journal_mode"] in ("delete", "truncate")
    assert config["attestation_marker"] == "/run/radiomicsd/attested"
    assert config["pseudonym_key_file"] is None  # the key comes from CAS via the environment
    assert config["record_paths"] is False and config["logging"]["show_paths"] is False
    assert config["age"]["identity_file"] is None
    assert config["metrics"]["enabled"] is False or config["metrics"]["host"] == "127.0.0.1"
    encrypted = ("/var/lib/radiomicsd/state/", "/var/lib/radiomicsd/output/")
    for key in ("state_dir", "quarantine_dir", "done_dir", "decrypt_tmp_dir"):
        assert config[key].startswith(encrypted), key
    # The daemon's own validation accepts it (unknown keys or bad values would raise).
    loaded = load_settings(SCONE_DIR / "config.enclave.yml")
    assert loaded.enclave_mode is True and loaded.journal_mode == "delete"


def test_kubernetes_manifests() -> None:
    docs = {}
    for path in sorted((SCONE_DIR / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs.setdefault(doc["kind"], []).append(doc)
    assert docs["LAS"][0]["apiVersion"] == "base.scone.cloud/v1beta1"
    for kind in ("SignedPolicy", "EncryptedPolicy"):
        assert docs[kind][0]["apiVersion"] == "cas.scone.cloud/v1beta1"
    assert set(docs["EncryptedPolicy"][0]["spec"]) == {"casAddress", "policy", "encryptionKey"}
    deployment = docs["Deployment"][0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["resources"]["limits"]["sgx.intel.com/enclave"] == "1"
    assert container["securityContext"]["privileged"] is False
    env = {e["name"]: e for e in container["env"]}
    assert env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["SCONE_LAS_ADDR"]["value"] == "$(HOST_IP):18766"
    assert env["SCONE_MODE"]["value"] == "HW"
    assert env["SCONE_CONFIG_ID"]["value"].endswith("/watch")
    assert list(env).index("HOST_IP") < list(env).index("SCONE_LAS_ADDR")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {d["metadata"]["name"] for d in docs["PersistentVolumeClaim"]}


# ------------------------------------------------------------- scripts with stub tools

ENCRYPTED = "Encrypted file system protection file"
SCONE_STUB = f"""#!/usr/bin/env bash
set -euo pipefail
echo "$*" >> "$STUB_LOG"
case "$1 $2" in
  "fspf create") : > "$3"; echo "Created $3. AES-GCM tag: {'0' * 32}" ;;
  "fspf addr") echo "Added region $4 to $3 new AES-GCM tag: {'1' * 32}" ;;
  "fspf addf") if [[ $# -ge 6 ]]; then cp -a "$5/." "$6/"; fi; echo "tag: {'2' * 32}" ;;
  "fspf encrypt") echo "{ENCRYPTED} $3 AES-GCM tag: {TAG} key: {KEY}" ;;
  "session create"|"session update")
    cp "$3" "$STUB_DIR/uploaded.yml"; stat -c %a "$3" > "$STUB_DIR/uploaded.mode" ;;
  "cas attest") ;;
  *) exit 3 ;;
esac
"""

DOCKER_STUB = f"""#!/usr/bin/env bash
set -euo pipefail
echo "$*" >> "$STUB_LOG"
case "$1" in
  buildx)
    if [[ "$*" == *"--target keytag"* ]]; then
      for arg in "$@"; do
        if [[ $arg == *dest=* ]]; then dest="${{arg##*dest=}}"; fi
      done
      mkdir -p "$dest"
      echo "{ENCRYPTED} /fspf/fspf.pb AES-GCM tag: {TAG} key: {KEY}" > "$dest/keytag"
      printf 'FSPF%s' "${{STUB_MISMATCH:-}}" | sha256sum | cut -d' ' -f1 \\
        > "$dest/fspf.pb.sha256"
    fi ;;
  create) echo cid123 ;;
  cp) printf 'FSPF' > "$3" ;;
  rm) ;;
  run) echo "export SCONE_HEAP=1073741824"; echo "${{STUB_HASH:-{MRENCLAVE}}}" ;;
esac
"""


@pytest.fixture()
def stubs(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    for name, body in (("scone", SCONE_STUB), ("docker", DOCKER_STUB)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    wrapper = bin_dir / "radiomicsd"
    wrapper.write_text(f'#!/usr/bin/env bash\nshift 2\ncd "{REPO}"\n'
                       f'exec "{sys.executable}" -m radiomicsd.scone "$@"\n')
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "STUB_LOG": str(tmp_path / "calls.log"), "STUB_DIR": str(tmp_path)}


def run_script(name: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / name), *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_fspf_protect_image_keeps_the_key_out_of_logs(tmp_path: Path,
                                                       stubs: dict[str, str]) -> None:
    root = tmp_path / "img"
    (root / "usr_lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr_lib")
    (root / "venv" / "sub").mkdir(parents=True)
    (root / "app" / "daemon").mkdir(parents=True)
    (root / "app" / "daemon" / "cli.py").write_text("print('hi')\n")
    fspf, keytag = root / "fspf" / "fspf.pb", root / "fspf" / "keytag"
    args = ["--fspf", str(fspf), "--keytag", str(keytag)]
    for name in ("usr_lib", "lib", "venv", "venv/sub", "missing"):
        args += ["--authenticated", str(root / name)]
    result = run_script("fspf-protect-image.sh", [*args, "--encrypted", str(root / "app")],
                        stubs)
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr
    assert stat.S_IMODE(keytag.stat().st_mode) == 0o600
    assert stat.S_IMODE(fspf.stat().st_mode) == 0o644
    assert scone.parse_keytag(keytag.read_text()).key == KEY
    assert (root / "app" / "daemon" / "cli.py").read_text() == "print('hi')\n"
    assert not (root / "app.plain").exists()
    calls = Path(stubs["STUB_LOG"]).read_text()
    assert f"addr {fspf} {root}/usr_lib --authenticated" in calls
    assert f"addr {fspf} {root}/venv --authenticated" in calls
    assert f"addr {fspf} {root}/app --encrypted" in calls
    assert f"{root}/lib " not in calls and f"{root}/venv/sub" not in calls
    again = run_script("fspf-protect-image.sh", [*args, "--encrypted", str(root / "app")],
                       stubs)
    assert again.returncode != 0 and "exists already" in again.stderr
    overlap = run_script("fspf-protect-image.sh",
                         ["--fspf", str(tmp_path / "o.pb"), "--keytag", str(tmp_path / "o.kt"),
                          "--authenticated", str(root / "venv"),
                          "--encrypted", str(root / "venv" / "sub")], stubs)
    assert overlap.returncode == 1 and "overlaps" in overlap.stderr


def test_create_input_volume(tmp_path: Path, stubs: dict[str, str]) -> None:
    source, volume = tmp_path / "videos", tmp_path / "volume"
    source.mkdir()
    (source / "a.mp4").write_bytes(b"video")
    keytag = tmp_path / "batch.keytag"
    inside = run_script("create-input-volume.sh",
                        [str(source), str(volume), str(volume / "k")], stubs)
    assert inside.returncode == 1 and "outside" in inside.stderr
    result = run_script("create-input-volume.sh", [str(source), str(volume), str(keytag)],
                        stubs)
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr and "1 file(s)" in result.stdout
    assert stat.S_IMODE(keytag.stat().st_mode) == 0o600
    assert (volume / "a.mp4").exists() and (volume / "volume.fspf").exists()
    assert "fspf addr volume.fspf . --encrypted --kernel ." in Path(stubs["STUB_LOG"]).read_text()
    not_empty = run_script("create-input-volume.sh",
                           [str(source), str(volume), str(tmp_path / "k2")], stubs)
    assert not_empty.returncode == 1 and "must be empty" in not_empty.stderr


def test_mrenclave_script(stubs: dict[str, str]) -> None:
    result = run_script("mrenclave.sh", ["radiomicsd:scone"], stubs)
    assert result.returncode == 0 and result.stdout == MRENCLAVE + "\n"
    assert "-e SCONE_HASH=1" in Path(stubs["STUB_LOG"]).read_text()
    broken = run_script("mrenclave.sh", ["radiomicsd:scone"], {**stubs, "STUB_HASH": "nope"})
    assert broken.returncode == 1 and "no 64-hex" in broken.stderr


def test_build_image_exports_a_private_keytag_that_matches(tmp_path: Path,
                                                           stubs: dict[str, str]) -> None:
    env = {**stubs, "SCONE_PYTHON_IMAGE": "registry.example/scone-python:glibc"}
    keytag = tmp_path / "image.keytag"
    result = run_script("build-image.sh", ["radiomicsd:scone", str(keytag)], env)
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr
    assert stat.S_IMODE(keytag.stat().st_mode) == 0o600
    assert scone.parse_keytag(keytag.read_text()).tag == TAG
    calls = Path(stubs["STUB_LOG"]).read_text()
    assert "--target runtime" in calls and "SCONE_HEAP=1G" in calls and "rm cid123" in calls
    mismatch = run_script("build-image.sh", ["radiomicsd:scone", str(tmp_path / "other")],
                          {**env, "STUB_MISMATCH": "x"})
    assert mismatch.returncode == 1 and "another build" in mismatch.stderr
    assert not (tmp_path / "other").exists()
    assert hashlib.sha256(b"FSPF").hexdigest() != hashlib.sha256(b"FSPFx").hexdigest()


def test_create_session_renders_privately_and_uploads(tmp_path: Path, stubs: dict[str, str],
                                                      inputs: dict[str, object]) -> None:
    env = {**stubs, "SCONE_CAS_ADDR": "cas.example.org"}
    result = run_script("create-session.sh",
                        ["--name", "radiomicsd", "--docker-image", "radiomicsd:scone",
                         "--keytag", str(inputs["keytag"]),
                         "--age-identity-file", str(inputs["age"])], env)
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr
    assert str(inputs["identity"]) not in result.stdout + result.stderr
    calls = Path(stubs["STUB_LOG"]).read_text()
    assert "cas attest cas.example.org" in calls and "session create" in calls
    assert (tmp_path / "uploaded.mode").read_text().strip() == "600"
    uploaded = yaml.safe_load((tmp_path / "uploaded.yml").read_text())
    assert uploaded["services"][0]["attestation"]["mrenclave"] == [MRENCLAVE]
    assert scone.check_session(uploaded, dev=False) == []


# --------------------------------------------------------------------------- installed package


@pytest.mark.slow
def test_render_session_works_from_an_installed_wheel(tmp_path, inputs) -> None:
    """A wheel carries the templates to <prefix>/share/radiomicsd/scone; the installed command
    renders with them, no checkout and no --template needed."""
    prefix, env, _ = install_wheel(tmp_path)
    share = prefix / "share" / "radiomicsd" / "scone"
    assert sorted(p.name for p in share.iterdir()) == [
        "config.enclave.yml", "session.dev.template.yaml", "session.template.yaml"]
    probe = subprocess.run([str(prefix / "bin" / "python"), "-c",
                            "import radiomicsd.scone as s; print(s.__file__); print(s.SCONE_DIR)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    module, folder = probe.stdout.split()
    assert Path(module).is_relative_to(prefix) and Path(folder) == share
    res = subprocess.run([str(prefix / "bin" / "python"), "-m", "radiomicsd", "scone",
                          "render-session", *prod_argv(inputs)],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    session = yaml.safe_load(Path(inputs["out"]).read_text())
    assert session["name"] == "radiomicsd"
