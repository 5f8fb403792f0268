"""Run SigmaHQ's CI command, `sigma check` of sigma-cli, unmodified but offline.

sigma-cli loads the same reference data as pySigma's validators (ATT&CK, D3FEND, SigmaHQ's
taxonomy) from the network. This entry point first points those loaders at the repository's data
(dac.checks.reference_data.use_local_reference_data, with the taxonomy extension of sigma/lint_exceptions.yml),
then hands the command line to sigma-cli. `validation_config` writes SigmaHQ's configuration
(sigma/reference/sigmahq/validators.yml) with the listed exceptions as its `exclusions`.

    python -m dac.checks.sigma_cli check --fail-on-error --fail-on-issues --validation-config <conf> sigma/rules
"""
from __future__ import annotations

import sys

import yaml

from .lint import all_validators, sigmahq_validator_config
from .reference_data import use_local_reference_data
from .lint_exceptions import load_exceptions
from dac.core.problems import DacError
from dac.core.repo import Layout, find_root


def validation_config(layout: Layout) -> str:
    """SigmaHQ's sigma-cli validation config, its exclusions being the listed pySigma exceptions."""
    validators = all_validators()
    exclusions: dict[str, list[str]] = {}
    for e in load_exceptions(layout).exceptions:
        if e.check in validators:
            exclusions.setdefault(e.rule, []).append(e.check)
    return yaml.safe_dump({"validators": sigmahq_validator_config(layout), "exclusions": exclusions}, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    from sigma.cli.main import main as sigma_main
    try:
        layout = Layout(find_root())
        use_local_reference_data(layout, load_exceptions(layout).taxonomy)
    except DacError as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:      # not inside the repository
        print(f"error: {e}", file=sys.stderr)
        return 1
    sys.argv = ["sigma"] + list(sys.argv[1:] if argv is None else argv)
    try:
        sigma_main()
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
