"""Offline reference data for SigmaHQ's checks.

pySigma 1.5 and pySigma-validators-sigmahq 0.21 load their reference data on first use, from the
network by default: ATT&CK from MITRE's STIX bundle (sigma.data.mitre_attack), D3FEND's ontology
(sigma.data.mitre_d3fend), SigmaHQ's taxonomy, file name prefixes and Windows provider lists
(sigma.validators.sigmahq.data.*). `use_local_reference_data` points every loader at files
derived from the repository (through each loader's documented `set_url(<file>)` and
`set_cache_dir(<dir>)`, the cache in a private temporary folder), so nothing is downloaded:

  ATT&CK     sigma/attack/enterprise-techniques.json, written as the minimal STIX bundle
             (collection, tactics, techniques with revoked/deprecated flags, groups, software,
             mitigations, data sources) that sigma.data.mitre_attack parses
  D3FEND     an empty ontology: the repository keeps no D3FEND data, so any d3fend tag would be
             reported as unknown (stricter than upstream; the rules carry none)
  SigmaHQ    sigma/reference/sigmahq/*.json (SigmaHQ's own JSON formats), plus the taxonomy
             entries of sigma/lint_exceptions.yml
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import tempfile
from pathlib import Path

from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from dac.rules.attack import AttackData, load_techniques
from .lint_exceptions import TaxonomyEntry


SIGMAHQ_DIR = "sigma/reference/sigmahq"


_private_dir: Path | None = None


def _scratch() -> Path:
    """A fresh folder under one private temporary folder per process (removed at exit)."""
    global _private_dir
    if _private_dir is None:
        _private_dir = Path(tempfile.mkdtemp(prefix="dac-pysigma-"))
        atexit.register(shutil.rmtree, _private_dir, True)
    return Path(tempfile.mkdtemp(dir=_private_dir))


def attack_stix_bundle(attack: AttackData) -> dict:
    """The local ATT&CK list as the STIX objects sigma.data.mitre_attack reads (nothing else)."""
    def ref(external_id):
        return [{"source_name": "mitre-attack", "external_id": external_id}]
    objects = [{"type": "x-mitre-collection", "id": "x-mitre-collection--dac", "name": "Enterprise ATT&CK",
                "x_mitre_version": attack.version}]
    objects += [{"type": "x-mitre-tactic", "name": t.name, "x_mitre_shortname": t.shortname, "external_references": ref(t.id)}
                for t in attack.tactics.values()]
    for t in attack.techniques.values():
        objects.append({"type": "attack-pattern", "name": t.name, "revoked": t.revoked, "x_mitre_deprecated": t.deprecated,
                        "kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": p} for p in t.tactics],
                        "external_references": ref(t.id)})
    kinds = {"G": "intrusion-set", "S": "tool", "M": "course-of-action", "DS": "x-mitre-data-source"}
    for other_id, name in attack.other_ids.items():
        kind = kinds.get(re.sub(r"\d+$", "", other_id))
        if kind:
            objects.append({"type": kind, "name": name, "external_references": ref(other_id)})
    return {"type": "bundle", "id": "bundle--dac-local", "objects": objects}


def _extend(documents: dict, extension: tuple[TaxonomyEntry, ...]) -> None:
    """Add the listed log sources to SigmaHQ's taxonomy and file-name documents, as SigmaHQ entries."""
    taxonomy, patterns = documents["sigmahq_taxonomy"], documents["sigmahq_filename"]
    for entry in extension:
        taxonomy["taxonomy"][f"dac_{entry.key}"] = {"logsource": dict(entry.logsource),
                                                    "field": {"native": [], "custom": list(entry.fields), "redundant": []}}
        patterns["pattern"][f"dac_{entry.key}"] = {"logsource": dict(entry.logsource), "prefix": entry.prefix}


def load_sigmahq_documents(layout: Layout, extension: tuple[TaxonomyEntry, ...] = ()) -> dict[str, dict]:
    """SigmaHQ's reference documents from sigma/reference/sigmahq, with the taxonomy extension added."""
    problems, documents = [], {}
    for name in ("sigmahq_taxonomy", "sigmahq_filename", "sigmahq_windows_eventid", "sigmahq_windows_provider"):
        path = layout.root / SIGMAHQ_DIR / f"{name}.json"
        try:
            documents[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            problems.append(Problem(layout.rel(path), getattr(e, "lineno", None), f"SigmaHQ reference data: {e}"))
    if problems:
        raise DacError(problems)
    _extend(documents, extension)
    return documents


def use_local_reference_data(layout: Layout, extension: tuple[TaxonomyEntry, ...] = (),
                             attack: AttackData | None = None) -> dict[str, str]:
    """Point pySigma's and the SigmaHQ validators' data loaders at repository data; returns versions."""
    from sigma.data import mitre_attack, mitre_d3fend
    from sigma.validators.sigmahq.data import data_filename, data_taxonomy, data_windows_eventid, data_windows_provider

    attack = attack or load_techniques(layout)
    scratch = _scratch()
    documents = load_sigmahq_documents(layout, extension)
    loaders = {"sigmahq_taxonomy": data_taxonomy, "sigmahq_filename": data_filename,
               "sigmahq_windows_eventid": data_windows_eventid, "sigmahq_windows_provider": data_windows_provider}
    for name, module in loaders.items():
        path = scratch / f"{name}.json"
        path.write_text(json.dumps(documents[name]), encoding="utf-8")
        module.set_cache_dir(str(scratch / f"cache_{name}"))      # before set_url: it opens the cache
        module.set_url(str(path))
    bundle = scratch / "enterprise-attack.json"
    bundle.write_text(json.dumps(attack_stix_bundle(attack)), encoding="utf-8")
    mitre_attack.set_cache_dir(str(scratch / "cache_mitre_attack"))
    mitre_attack.set_url(str(bundle))
    d3fend = scratch / "d3fend.json"
    d3fend.write_text(json.dumps({"@graph": []}), encoding="utf-8")
    mitre_d3fend.set_cache_dir(str(scratch / "cache_mitre_d3fend"))
    mitre_d3fend.set_url(str(d3fend))
    loaded = mitre_attack.mitre_attack_version                          # load now, from the local file
    return {"attack": loaded, **{n: str(documents[n].get("version")) for n in loaders}}
