"""tests/lambda-build builds what infra/template.yaml deploys, the way `sam build` does."""

import subprocess

from template_model import ROOT, source


def test_lambda_build_builds_every_template_binary_and_nothing_else():
    printed = subprocess.run(
        [str(ROOT / "tests" / "lambda-build"), "--print"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert printed[:5] == ["cargo", "lambda", "build", "--release", "--x86-64"]
    bins = [printed[i + 1] for i, arg in enumerate(printed) if arg == "--bin"]
    template_bins = [
        r["Metadata"]["BuildProperties"]["Binary"] for r in source()["Resources"].values() if r["Type"] == "AWS::Serverless::Function"
    ]
    assert sorted(bins) == sorted(template_bins)
    assert "--locked" in printed  # Cargo.lock is committed: the release build must not change it


def test_lambda_build_rejects_unknown_arguments():
    result = subprocess.run([str(ROOT / "tests" / "lambda-build"), "--bogus"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown argument --bogus" in result.stderr
