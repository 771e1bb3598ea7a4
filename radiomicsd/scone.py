"""Render and check the CAS session that runs radiomicsd inside a SCONE enclave.

The session templates, the enclave configuration and the schema live in ``scone/`` at the
repository root (``scone/`` is not a Python package). Template syntax, chosen so that it can
never clash with the ``$$SCONE::name$$`` secret references that CAS resolves at run time:

* ``{{ key }}`` inside a line is replaced by a single-line value;
* a line holding nothing but ``{{ key }}`` takes a multi-line value, every line indented like
  the placeholder (for YAML block scalars such as an injection file's ``content: |``);
* a comment line ``# {{ if key }}`` opens a block that is kept only when ``key`` has a
  non-empty value, ``# {{ end }}`` closes it (blocks do not nest).

The renderer does no YAML quoting: :func:`session_values` validates every value it produces
against a strict pattern before it reaches a template.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _scone_dir() -> Path:
    """scone/ of the source checkout, else the copy a wheel installed under
    ``<prefix>/share/radiomicsd/scone`` (see pyproject.toml's data-files)."""
    checkout = Path(__file__).resolve().parents[1] / "scone"
    installed = Path(sysconfig.get_path("data")) / "share" / "radiomicsd" / "scone"
    for folder in (checkout, installed):
        if (folder / "session.template.yaml").is_file():
            return folder
    return checkout  # the error then names the checkout path


SCONE_DIR = _scone_dir()
PROD_TEMPLATE = SCONE_DIR / "session.template.yaml"
DEV_TEMPLATE = SCONE_DIR / "session.dev.template.yaml"
ENCLAVE_CONFIG = SCONE_DIR / "config.enclave.yml"

#: ``$$SCONE::name$$`` names CAS resolves without a secret of the session. The session
#: language documents none for environment variables and injection files, so this is empty;
#: add a name here only with a reference to the CAS documentation.
BUILTIN_REFERENCES: frozenset[str] = frozenset()

_KEY = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"\{\{\s*(" + _KEY + r")\s*\}\}")
_BLOCK = re.compile(r"^([ \t]*)\{\{\s*(" + _KEY + r")\s*\}\}[ \t]*$")
_IF = re.compile(r"^\s*#\s*\{\{\s*if\s+(" + _KEY + r")\s*\}\}\s*$")
_END = re.compile(r"^\s*#\s*\{\{\s*end\s*\}\}\s*$")
_REFERENCE = re.compile(r"\$\$SCONE::([^$:\s]+)((?::[A-Za-z0-9]+)*)\$\$")

_SEGMENT = re.compile(r"[A-Za-z0-9_\-.~]{1,128}")  # CAS session, service and volume names
_SESSION = re.compile(r"[A-Za-z0-9_\-.~]{1,128}(/[A-Za-z0-9_\-.~]{1,128})*")
_IMAGE = re.compile(r"[A-Za-z0-9_\-.~/:@]{1,255}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"0\.3(\.[0-9]{1,3})?")
_AGE_IDENTITY = re.compile(r"AGE-SECRET-KEY-1[02-9ACDEFGHJKLMNPQRSTUVWXYZ]{58}")
_KEYTAG = re.compile(r"\btag:\s*([0-9a-fA-F]{32})\b.*?\bkey:\s*([0-9a-fA-F]{64})\b", re.S)


class SessionError(ValueError):
    """A template, an input or a rendered session is unusable; the message says which.

    Messages never contain secret values (keys, identities, rendered session text).
    """


@dataclass(frozen=True)
class FspfKeyTag:
    """Key and tag of an encrypted FSPF, as printed by ``scone fspf encrypt``."""

    key: str = field(repr=False)
    tag: str


def render_session(template: str, values: Mapping[str, str]) -> str:
    """Fill a session template; ``$$SCONE::x$$`` references stay literal.

    Parameters
    ----------
    template : str
        Template text (syntax in the module docstring).
    values : Mapping[str, str]
        Placeholder values. Values may not contain ``{{``, ``}}`` or ``$$SCONE::``;
        inline values must be single lines. Unused values are ignored.

    Returns
    -------
    str
        The rendered session text.

    Raises
    ------
    SessionError
        A placeholder has no value (all such names are listed), a value is malformed, or a
        conditional block is unbalanced.
    """
    for key, value in values.items():
        if not isinstance(value, str):
            raise SessionError(f"value for {key!r} is not a string")
        if "{{" in value or "}}" in value or "$$SCONE::" in value:
            raise SessionError(f"value for {key!r} contains template or $$SCONE:: syntax")
    out: list[str] = []
    missing: set[str] = set()
    section: str | None = None
    keep = True
    for number, line in enumerate(template.splitlines(keepends=True), start=1):
        opening = _IF.match(line)
        if opening:
            if section is not None:
                raise SessionError(f"template line {number}: blocks cannot nest ({section!r})")
            section = opening.group(1)
            keep = bool(values.get(section))
            continue
        if _END.match(line):
            if section is None:
                raise SessionError(f"template line {number}: 'end' without 'if'")
            section, keep = None, True
            continue
        if keep:
            out.append(_fill_line(line, number, values, missing))
    if section is not None:
        raise SessionError(f"template block {section!r} is never closed")
    if missing:
        raise SessionError("no value for placeholder(s): " + ", ".join(sorted(missing)))
    return "".join(out)


def _fill_line(line: str, number: int, values: Mapping[str, str], missing: set[str]) -> str:
    """Fill one template line; names without a value are added to ``missing``."""
    body = line.rstrip("\r\n")
    ending = line[len(body):]
    block = _BLOCK.match(body)
    if block:
        indent, key = block.groups()
        if key not in values:
            missing.add(key)
            return line
        parts = values[key].splitlines() or [""]
        return "".join((indent + part if part.strip() else "") + "\n" for part in parts)

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            missing.add(key)
            return match.group(0)
        if "\n" in values[key] or "\r" in values[key]:
            raise SessionError(f"template line {number}: value for {key!r} must be one line")
        return values[key]

    filled = _PLACEHOLDER.sub(substitute, body)
    if "{{" in _PLACEHOLDER.sub("", filled) or "}}" in _PLACEHOLDER.sub("", filled):
        raise SessionError(f"template line {number}: malformed placeholder")
    return filled + ending


def scone_references(node: Any) -> Iterator[str]:
    """Yield the secret name of every ``$$SCONE::name[:format]$$`` in a loaded session."""
    if isinstance(node, str):
        for match in _REFERENCE.finditer(node):
            yield match.group(1)
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from scone_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from scone_references(value)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _named(items: Any) -> list[dict[str, Any]]:
    return [item for item in items or [] if isinstance(item, dict)]


def check_session(doc: Any, *, dev: bool) -> list[str]:  # noqa: C901 - one flat list of rules
    """Check a loaded session beyond its schema; return one sentence per problem.

    Checks: every ``$$SCONE::x$$`` has a secret ``x`` (or is in :data:`BUILTIN_REFERENCES`),
    secret names are unique, services name declared images, images mount declared volumes,
    every service is attested by MRENCLAVE. Unless ``dev``: no debug-mode toleration, no
    wildcard ``ignore_advisories``, attestation not disabled, no ``SCONE_ALLOW_DLOPEN=2`` and
    every service runs from an FSPF-protected image (``fspf_path``/``fspf_key``/``fspf_tag``).
    """
    if not isinstance(doc, dict):
        return ["the session is not a YAML mapping"]
    problems: list[str] = []
    secret_names = [item.get("name") for item in _named(doc.get("secrets"))]
    for name in sorted({n for n in secret_names if secret_names.count(n) > 1}, key=str):
        problems.append(f"secret {name!r} is defined more than once")
    for name in sorted(set(scone_references(doc))):
        if name not in secret_names and name not in BUILTIN_REFERENCES:
            problems.append(f"$$SCONE::{name}$$ refers to no secret of the session")
    for text in _strings(doc):
        if text.count("$$SCONE::") != len(_REFERENCE.findall(text)):
            problems.append("a $$SCONE:: reference is malformed (expected $$SCONE::name$$)")
            break
    images = {item.get("name"): item for item in _named(doc.get("images"))}
    volumes = {item.get("name") for item in _named(doc.get("volumes"))}
    for image in images.values():
        for mount in _named(image.get("volumes")):
            if mount.get("name") not in volumes:
                problems.append(f"image {image.get('name')!r} mounts undeclared volume "
                                f"{mount.get('name')!r}")
    attestation = (doc.get("security") or {}).get("attestation") or {}
    for service in _named(doc.get("services")):
        label = f"service {service.get('name')!r}"
        if "image_name" in service and service["image_name"] not in images:
            problems.append(f"{label} uses undeclared image {service['image_name']!r}")
        if not _mrenclaves(service) and attestation.get("mode") != "none":
            problems.append(f"{label} has no MRENCLAVE to attest")
        if dev:
            continue
        if (service.get("environment") or {}).get("SCONE_ALLOW_DLOPEN") == "2":
            problems.append(f"{label} sets SCONE_ALLOW_DLOPEN=2 (debug only)")
        if not all(service.get(k) for k in ("fspf_path", "fspf_key", "fspf_tag")):
            problems.append(f"{label} has no code FSPF (fspf_path, fspf_key, fspf_tag)")
    if not dev:
        tolerate = attestation.get("tolerate") or []
        if "debug-mode" in tolerate:
            problems.append("production session tolerates debug-mode enclaves")
        advisories = attestation.get("ignore_advisories")
        if advisories == "*" or (isinstance(advisories, list) and "*" in advisories):
            problems.append("production session ignores all Intel advisories ('*')")
        if attestation.get("mode") == "none":
            problems.append("production session disables attestation")
    return problems


def _mrenclaves(service: Mapping[str, Any]) -> list[Any]:
    """MRENCLAVE values of a service, in the current or the deprecated notation."""
    found = list(service.get("mrenclaves") or [])
    variants = service.get("attestation") or []
    for variant in variants if isinstance(variants, list) else [variants]:
        if isinstance(variant, Mapping):
            value = variant.get("mrenclave") or []
            found.extend(value if isinstance(value, list) else [value])
    return found


def parse_keytag(text: str) -> FspfKeyTag:
    """Parse the output of ``scone fspf encrypt`` ("... tag: <32 hex> key: <64 hex>")."""
    matches = _KEYTAG.findall(text)
    if len(matches) != 1:
        raise SessionError("expected exactly one 'tag: <32 hex> key: <64 hex>' (the output of "
                           "`scone fspf encrypt`)")
    tag, key = matches[0]
    return FspfKeyTag(key=key.lower(), tag=tag.lower())


def parse_age_identity(text: str) -> str:
    """Return the one ``AGE-SECRET-KEY-1...`` line of an age identity file."""
    found = [line.strip() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if len(found) != 1 or not _AGE_IDENTITY.fullmatch(found[0]):
        raise SessionError("the age identity file must hold exactly one X25519 identity "
                           "(AGE-SECRET-KEY-1..., as written by age-keygen)")
    return found[0]


def age_recipient(identity: str) -> str:
    """Public ``age1...`` recipient of an X25519 identity (safe to publish)."""
    from pyrage import x25519

    try:
        return str(x25519.Identity.from_str(identity).to_public())
    except Exception as exc:  # pyrage raises its own IdentityError
        raise SessionError("the age identity is not a valid X25519 identity") from exc


def read_secret_file(path: Path, what: str) -> str:
    """Read a secret file that only its owner may read (mode 0600 or stricter)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SessionError(f"{what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SessionError(f"{what} {path} is not a regular file")
    if info.st_mode & 0o077:
        raise SessionError(f"{what} {path} is readable by group or others "
                           f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it")
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise SessionError(f"{what} {path} cannot be read as ASCII text") from None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".session-", dir=path.parent)
    except OSError as exc:
        raise SessionError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise SessionError(f"cannot write {path}: {exc.strerror}") from None


def _checked(value: str | None, pattern: re.Pattern[str], option: str, expected: str) -> str:
    if value is None or not pattern.fullmatch(value):
        raise SessionError(f"{option}: expected {expected}")
    return value


def _enclave_config(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SessionError(f"--config {path}: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        raise SessionError(f"--config {path} is not valid YAML") from None
    if not isinstance(loaded, dict):
        raise SessionError(f"--config {path} is not a YAML mapping")
    return text.rstrip()


def session_values(args: argparse.Namespace) -> tuple[dict[str, str], str | None]:
    """Validate the command-line inputs; return template values and the age recipient.

    The recipient is ``None`` when the identity is imported from another session.
    """
    name = _checked(args.name, _SEGMENT, "--name", "1-128 of A-Z a-z 0-9 _ - . ~")
    session = name
    if args.cas_namespace:
        namespace = _checked(args.cas_namespace, _SESSION, "--cas-namespace",
                             "a session name or path (segments of A-Z a-z 0-9 _ - . ~)")
        session = f"{namespace}/{name}"
    mrenclaves = [_checked((m or "").lower(), _HEX64, "--mrenclave", "64 hex digits")
                  for m in args.mrenclave or []]
    if not mrenclaves:
        raise SessionError("give at least one --mrenclave (scone/scripts/mrenclave.sh prints it)")
    values = {
        "session": session,
        "session_version": _checked(args.session_version, _VERSION, "--session-version",
                                    "0.3 or 0.3.N"),
        "image": _checked(args.image, _IMAGE, "--image", "an image name (A-Z a-z 0-9 _-.~/:@)"),
        "mrenclaves": ", ".join(f'"{m}"' for m in dict.fromkeys(mrenclaves)),
        "output_volume": _checked(args.output_volume, _SEGMENT, "--output-volume", "a name"),
        "state_volume": _checked(args.state_volume, _SEGMENT, "--state-volume", "a name"),
        "config_yml": _enclave_config(Path(args.config) if args.config else ENCLAVE_CONFIG),
    }
    if args.predecessor:
        values["predecessor"] = _checked(args.predecessor.lower(), _HEX64, "--predecessor",
                                         "the 64-hex hash of the current session")
    if args.fspf_keytag:
        code = parse_keytag(read_secret_file(Path(args.fspf_keytag), "--fspf-keytag"))
        values.update(fspf_key=code.key, fspf_tag=code.tag)
    elif not args.dev:
        raise SessionError("--fspf-keytag FILE is required: the keytag of the image FSPF "
                           "(written by scone/scripts/build-image.sh)")
    if bool(args.input_volume) != bool(args.input_keytag):
        raise SessionError("--input-volume and --input-keytag go together")
    if args.input_volume:
        values["input_volume"] = _checked(args.input_volume, _SEGMENT, "--input-volume", "a name")
        batch = parse_keytag(read_secret_file(Path(args.input_keytag), "--input-keytag"))
        values.update(input_fspf_key=batch.key, input_fspf_tag=batch.tag)
    names = [values["output_volume"], values["state_volume"], values.get("input_volume")]
    if len({n for n in names if n}) != len([n for n in names if n]):
        raise SessionError("volume names must differ")
    if bool(args.age_identity_file) == bool(args.age_identity_from_session):
        raise SessionError("give exactly one of --age-identity-file and "
                           "--age-identity-from-session")
    recipient = None
    if args.age_identity_file:
        identity = parse_age_identity(
            read_secret_file(Path(args.age_identity_file), "--age-identity-file"))
        recipient = age_recipient(identity)
        values.update(age_identity=identity, age_recipient=recipient)
    else:
        values["age_identity_session"] = _checked(
            args.age_identity_from_session, _SESSION, "--age-identity-from-session",
            "the name of the session that exports secret 'age_identity'")
    return values, recipient


def load_session(text: str) -> Any:
    """Parse rendered session text; errors name the position, never the content."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SessionError(f"the rendered session is not valid YAML{where}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``radiomicsd scone render-session`` to ``parser``."""
    parser.description = ("Render the CAS session that runs radiomicsd in a SCONE enclave, "
                          "check it and write it with mode 0600 (it holds FSPF keys).")
    parser.add_argument("--template", metavar="FILE",
                        help="session template (default: scone/session.template.yaml, or "
                             "scone/session.dev.template.yaml with --dev)")
    parser.add_argument("--dev", action="store_true",
                        help="development session for debug enclaves (scone/Dockerfile.dev): "
                             "tolerates debug-mode and outdated TCB, no code FSPF")
    parser.add_argument("--name", required=True, help="session name, e.g. radiomicsd")
    parser.add_argument("--cas-namespace", metavar="NS",
                        help="create the session inside this CAS namespace (session NS/NAME)")
    parser.add_argument("--mrenclave", action="append", metavar="HEX",
                        help="permitted MRENCLAVE (64 hex; repeat for several builds or heaps)")
    parser.add_argument("--fspf-keytag", metavar="FILE",
                        help="mode-0600 file with the image FSPF key and tag (required "
                             "unless --dev)")
    parser.add_argument("--image", default="radiomicsd",
                        help="image name inside the session (default: radiomicsd)")
    parser.add_argument("--output-volume", default="radiomicsd-output", metavar="NAME",
                        help="CAS-initialised encrypted output volume (default: %(default)s)")
    parser.add_argument("--state-volume", default="radiomicsd-state", metavar="NAME",
                        help="CAS-initialised encrypted volume for journal, quarantine and "
                             "decryption scratch (default: %(default)s)")
    parser.add_argument("--input-volume", metavar="NAME",
                        help="FSPF-encrypted batch input volume; adds the 'batch' service")
    parser.add_argument("--input-keytag", metavar="FILE",
                        help="mode-0600 keytag of the batch input volume "
                             "(from scone/scripts/create-input-volume.sh)")
    parser.add_argument("--age-identity-file", metavar="FILE",
                        help="mode-0600 age-keygen identity file; its key becomes an "
                             "explicit CAS secret")
    parser.add_argument("--age-identity-from-session", metavar="SESSION",
                        help="import secret 'age_identity' exported by this CAS session")
    parser.add_argument("--config", metavar="FILE",
                        help="daemon config injected as /etc/radiomicsd/config.yml "
                             "(default: scone/config.enclave.yml)")
    parser.add_argument("--predecessor", metavar="HASH",
                        help="hash of the session being replaced (session updates only)")
    parser.add_argument("--session-version", default="0.3",
                        help="policy language version (default: %(default)s)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="where to write the rendered session (mode 0600)")


def run(args: argparse.Namespace) -> int:
    """Render, check and write the session; 0 on success, 2 on a usage error."""
    try:
        if args.template:
            template_path = Path(args.template)
        else:
            template_path = DEV_TEMPLATE if args.dev else PROD_TEMPLATE
        try:
            template = template_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SessionError(f"template {template_path}: {exc.strerror} (install the package "
                               "or run from a checkout, or pass --template)") from None
        values, recipient = session_values(args)
        text = render_session(template, values)
        problems = check_session(load_session(text), dev=args.dev)
        if problems:
            raise SessionError("the rendered session fails its checks:\n  - "
                               + "\n  - ".join(problems))
        write_private(Path(args.output), text)
    except SessionError as exc:
        print(f"radiomicsd scone render-session: error: {exc}", file=sys.stderr)
        return 2
    services = "watch, batch" if values.get("input_volume") else "watch"
    print(f"wrote {args.output} (mode 0600) for session {values['session']}; "
          f"services: {services}; SCONE_CONFIG_ID={values['session']}/watch", file=sys.stderr)
    if recipient:
        print(f"age recipient for senders: {recipient}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover - convenience until the CLI is wired
    _parser = argparse.ArgumentParser(prog="radiomicsd scone render-session")
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
