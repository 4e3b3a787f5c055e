"""Static checks of infra/terraform (plan and apply run in tests/e2e/test_terraform_apply.py where terraform exists)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import hcl2
import pytest

from lambdas.shared import config
from ops.build import FUNCTIONS, HANDLERS

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "infra" / "terraform"
ENV = TF / "envs" / "dev"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
META_ARGUMENTS = {"source", "version", "depends_on", "count", "for_each", "providers", "__is_block__"}


def unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return hcl2.load(f)


def blocks(folder: Path, kind: str) -> dict[str, dict]:
    """{label: body} of every `kind` block in a folder's .tf files."""
    found = {}
    for path in sorted(folder.glob("*.tf")):
        for block in load(path).get(kind, []):
            for label, body in block.items():
                found[unquote(label)] = body
    return found


def module_dirs() -> list[Path]:
    return sorted(p for p in (TF / "modules").iterdir() if p.is_dir())


def callers() -> list[Path]:
    return [ENV] + module_dirs()


def test_every_terraform_file_parses():
    files = [p for p in TF.rglob("*") if p.suffix in (".tf", ".tfvars", ".hcl")]
    assert len(files) >= 17
    for path in files:
        load(path)


def test_every_module_call_passes_declared_variables_and_all_required_ones():
    calls = 0
    for folder in callers():
        for name, call in blocks(folder, "module").items():
            calls += 1
            target = (folder / unquote(call["source"])).resolve()
            declared = blocks(target, "variable")
            passed = set(call) - META_ARGUMENTS
            assert passed <= set(declared), f"module {name} passes undeclared {sorted(passed - set(declared))}"
            required = {v for v, body in declared.items() if "default" not in body}
            assert required <= passed, f"module {name} lacks required {sorted(required - passed)}"
    assert calls >= 6


def test_every_referenced_module_output_exists():
    for folder in callers():
        sources = {name: (folder / unquote(call["source"])).resolve()
                   for name, call in blocks(folder, "module").items()}
        text = "\n".join(p.read_text() for p in folder.glob("*.tf"))
        for module, output in set(re.findall(r"module\.(\w+)\.(\w+)", text)):
            assert module in sources, f"module.{module} is referenced in {folder} but not declared"
            outputs = blocks(sources[module], "output")
            assert output in outputs, f"module.{module}.{output}: {sources[module].name} has no output {output}"


def test_every_tfvars_and_provisioning_key_is_a_declared_variable():
    declared = set(blocks(ENV, "variable"))
    assert {k for k in load(ENV / "dev.tfvars") if not k.startswith("__")} <= declared
    from ops.provision import TFVARS_KEYS

    assert set(TFVARS_KEYS) <= declared


def test_handlers_and_zip_paths_match_what_make_build_produces():
    modules = blocks(ENV, "module")
    for name in FUNCTIONS:
        call = modules[name]
        assert unquote(call["handler"]) == HANDLERS[name]
        assert unquote(call["zip_path"]).endswith(f"/{name}.zip")
        module, _, attr = HANDLERS[name].rpartition(".")
        assert (ROOT / (module.replace(".", "/") + ".py")).exists()


def test_terraform_sets_exactly_the_environment_variables_the_handlers_read():
    text = (ENV / "main.tf").read_text()
    for name, env_vars in config.ENV_BY_FUNCTION.items():
        block = re.search(rf"{name}_environment = \{{(.*?)\n  \}}", text, re.S)
        assert block, f"local.{name}_environment not found"
        keys = set(re.findall(r"^\s*(ELT_[A-Z_]+)\s*=", block.group(1), re.M))
        assert keys == {v.name for v in env_vars}, f"{name}: terraform sets {sorted(keys)}"
        assert re.search(rf"^\s*environment\s+= local\.{name}_environment$", text, re.M)


def test_restricted_account_defaults_tags_off_for_roles_and_queues_and_observability_off():
    variables = blocks(ENV, "variable")
    assert variables["tag_iam_roles"]["default"] is False
    assert variables["tag_sqs_queues"]["default"] is False
    assert variables["observability_enabled"]["default"] is False
    provider = (ENV / "main.tf").read_text().split('provider "aws"', 1)[1].split("\n}", 1)[0]
    assert not re.search(r"^\s*default_tags\s*\{", provider, re.M)


def test_no_policy_grants_a_wildcard_action():
    for path in TF.rglob("*.tf"):
        for statement in re.findall(r"statement \{(.*?)\n  \}", path.read_text(), re.S):
            if re.search(r'effect\s*=\s*"Deny"', statement):
                continue  # a Deny on s3:* (TLS only) takes permissions away
            for actions in re.findall(r"actions\s*=\s*\[(.*?)\]", statement, re.S):
                assert "*" not in actions, f"{path}: wildcard action in {actions}"


def test_every_checkov_skip_says_why():
    skips = [(p, m) for p in TF.rglob("*.tf") for m in re.finditer(r"#checkov:skip=(\w+)(?::(.*))?", p.read_text())]
    assert skips
    for path, match in skips:
        assert match.group(2) and len(match.group(2).strip()) > 20, f"{path}: {match.group(1)} has no reason"


def test_checkov_finds_no_failed_check():
    if not CHECKOV.exists():
        if os.environ.get("ELT_REQUIRE_CHECKOV"):
            pytest.fail("checkov is missing: `make test` installs it into .venv-checkov")
        pytest.skip("checkov not installed here; `make test` installs it into .venv-checkov")
    done = subprocess.run([str(CHECKOV), "-d", str(TF), "--framework", "terraform", "--skip-download", "--quiet",
                           "--compact", "-o", "json"], capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = reports[0]["summary"]
    failed = [f"{c['check_id']} {c['resource']} {c['file_path']}" for r in reports
              for c in r.get("results", {}).get("failed_checks", [])]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 50


def test_terraform_fmt_is_clean_where_terraform_exists():
    import shutil

    binary = shutil.which("terraform")
    if not binary:
        pytest.skip("terraform is not installed here (the other static checks still run)")
    done = subprocess.run([binary, "fmt", "-check", "-recursive", str(TF)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_batch_operations_role_is_optional_and_writes_only_replay_copies_and_reports():
    variables = blocks(ENV, "variable")
    assert variables["batch_operations_role_enabled"]["default"] is False
    tf = load(ENV / "batch_operations.tf")

    def labelled(kind: str, type_: str, name: str) -> dict:
        return next(b[f'"{type_}"'][f'"{name}"'] for b in tf[kind] if f'"{type_}"' in b and f'"{name}"' in b[f'"{type_}"'])

    statements = {unquote(s["sid"]): s for s in labelled("data", "aws_iam_policy_document", "batch_operations")["statement"]}
    grants = {sid: (sorted(map(unquote, s["actions"])), [unquote(r) for r in s["resources"]])
              for sid, s in statements.items()}
    assert grants == {
        "ReadTheManifest": (["s3:GetObject", "s3:GetObjectVersion"],
                            ["${local.batch_ops_bucket_arn}/${var.batch_operations_prefix}manifests/*"]),
        "ReadBronzeOriginals": (["s3:GetObject", "s3:GetObjectTagging"], ["${module.storage.bronze_bucket_arn}/bronze/*"]),
        "TellMissingFromForbidden": (["s3:ListBucket"], ["${module.storage.bronze_bucket_arn}"]),
        "WriteReplayCopies": (["s3:PutObject", "s3:PutObjectTagging"],
                              ["${module.storage.bronze_bucket_arn}/bronze/replay/*"]),
        "WriteTheCompletionReport": (["s3:PutObject"],
                                     ["${local.batch_ops_bucket_arn}/${var.batch_operations_prefix}reports/*"]),
    }
    assume = labelled("data", "aws_iam_policy_document", "batch_operations_assume")["statement"][0]
    assert [unquote(i) for i in assume["principals"][0]["identifiers"]] == ["batchoperations.s3.amazonaws.com"]
    assert unquote(assume["condition"][0]["variable"]) == "aws:SourceAccount"
    assert all(unquote(labelled("resource", kind, "batch_operations")["count"]) == "${var.batch_operations_role_enabled ? 1 : 0}"
               for kind in ("aws_iam_role", "aws_iam_role_policy"))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_the_backend_placeholder_is_a_valid_bucket_name_and_use_lockfile_has_the_terraform_it_needs():
    backend = load(ENV / "backend" / "backend.hcl")
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", unquote(backend["bucket"])), backend["bucket"]
    required = unquote(load(ENV / "main.tf")["terraform"][0]["required_version"])
    floor = re.fullmatch(r">=\s*([0-9.]+)", required)
    assert floor, f"required_version {required!r} is not a plain lower bound"
    if backend.get("use_lockfile"):  # S3-native locking arrived in Terraform 1.10
        assert _version(floor.group(1)) >= (1, 10), required


def test_the_provider_is_held_to_one_major_version_and_the_lock_file_matches_it():
    provider = load(ENV / "main.tf")["terraform"][0]["required_providers"][0]["aws"]
    constraint = unquote(provider["version"])
    pessimistic = re.fullmatch(r"~>\s*(\d+)\.(\d+)", constraint)
    assert pessimistic, f"aws provider constraint {constraint!r} spans more than one major version"
    lock = (ENV / ".terraform.lock.hcl").read_text()
    locked = re.search(r'provider "registry.terraform.io/hashicorp/aws" \{\s*version\s*=\s*"([0-9.]+)"', lock)
    assert locked, ".terraform.lock.hcl pins no hashicorp/aws version: run terraform init and commit it"
    major, minor = int(pessimistic.group(1)), int(pessimistic.group(2))
    version = _version(locked.group(1))
    assert version[0] == major and version[1] >= minor, (constraint, locked.group(1))
    assert f'constraints = "{constraint}"' in lock, "the lock file was made for another constraint: rerun terraform init"


# Settings an account may require that every environment must be able to reach (docs/infrastructure.md).
ESCAPE_HATCHES = ("permissions_boundary_arn", "log_kms_key_arn")


def test_account_level_settings_are_variables_of_envs_dev_and_reach_every_module_that_takes_them():
    declared = blocks(ENV, "variable")
    for name in ESCAPE_HATCHES:
        assert name in declared, f"envs/dev cannot set {name}"
    reached = 0
    for module, call in blocks(ENV, "module").items():
        takes = blocks((ENV / unquote(call["source"])).resolve(), "variable")
        for name in set(ESCAPE_HATCHES) & set(takes):
            assert unquote(call.get(name, "")) == f"${{var.{name}}}", f"module {module} does not get var.{name}"
            reached += 1
    assert reached == 4  # ingest and transform: the boundary and the log key
    assert unquote(blocks(ENV, "module")["storage"]["kms_key_arn"]) == "${var.kms_key_arn}"
    for queue in ("queue", "ingest_queue"):  # a created queue takes the key its consumers are granted
        assert unquote(blocks(ENV, "module")[queue]["kms_key_arn"]) == "${var.queue_kms_key_arn}", queue
    batch = (ENV / "batch_operations.tf").read_text()
    assert "permissions_boundary = var.permissions_boundary_arn" in batch


def test_every_variable_a_checkov_skip_relies_on_can_be_set_from_envs_dev():
    """A skip that says 'set var.X' holds only if an environment can set X and passes it on."""
    env_vars = set(blocks(ENV, "variable"))
    for path in TF.rglob("*.tf"):
        for match in re.finditer(r"#checkov:skip=(\w+):(.*)", path.read_text()):
            for name in re.findall(r"var\.(\w+)", match.group(2)):
                assert name in env_vars, f"{path}: {match.group(1)}'s reason relies on var.{name}, which envs/dev lacks"
