"""Local stand-ins for Splunk's management REST API and Azure Resource Manager's Sentinel
alertRules API, for the deploy tests. No Splunk or Sentinel runs here; these servers follow the
vendors' documented contracts as far as dac uses them:

Splunk (REST API reference, saved/searches; authentication tokens): HTTPS on a local port,
`Authorization: Bearer <token>` or 401, `output_mode=json` answers with `entry[].name/acl/content`,
create = POST …/saved/searches with `name` (201; 409 when it exists), update = POST
…/saved/searches/<name> without `name` (200; 404 when missing), DELETE (200; 404). Boolean
attributes come back as JSON booleans, as Splunk's JSON output does.

ARM (Microsoft.SecurityInsights alertRules, and Log Analytics savedSearches for the hunting
queries, see FakeArm._saved_searches): `api-version` required, Bearer auth or 401, list =
`{"value": [...], "nextLink": ...}` in pages, GET one (404 when missing), PUT with
`kind`/`properties` (201 created / 200 updated, a new etag on every write, 409 when the body's etag
is not the current one), DELETE (200; 204 when missing). Either server can be told to answer the
next calls on an object with given statuses (429 with Retry-After, 500, …).

Paging follows the documented contracts: Splunk takes `count` and `offset` and answers with
`paging: {total, perPage, offset}` (count=0 means "all", and a server may give fewer than asked:
`max_page` caps a page here); ARM pages with `nextLink`, an absolute URL carrying the query.

`misbehave()` makes the next GETs fail the way proxies, load balancers and throttled APIs do,
outside any vendor contract: a Content-Length with no or half the body, a connection closed with
no answer (a keep-alive reset), JSON cut off with a matching Content-Length, a 200 with an HTML
error page, a Splunk paging.total the entries never add up to, an ARM nextLink to another
host; `drop_writes()` answers writes with success without doing them (the read-back must notice).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SPLUNK_BOOLEANS = {"enableSched", "is_scheduled", "alert.track", "alert.suppress", "alert.digest_mode", "disabled",
                   "action.notable", "action.risk", "action.correlationsearch.enabled"}


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost signed by it."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dac test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


class _Server:
    def __init__(self, tls: tuple[Path, Path, Path], token: str):
        self.token = token
        self.requests: list[tuple[str, str]] = []       # (method, path) of every call
        self.failures: dict[tuple[str, str], list[tuple[int, str | None]]] = {}
        self.broken: list[str] = []          # misbehaviours for the next GETs, in order
        self.dropped_writes = 0              # the next writes answer success and change nothing
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self, method):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                with outer.lock:
                    outer.requests.append((method, unquote(parts.path)))
                    broken = outer.broken.pop(0) if method == "GET" and outer.broken else None
                    if method != "GET" and outer.dropped_writes and headers_ok(outer, self.headers):
                        outer.dropped_writes -= 1
                        status, headers, payload = (201 if method != "DELETE" else 200), {}, {}
                    else:
                        status, headers, payload = outer.handle(method, unquote(parts.path), parse_qs(parts.query),
                                                                body, self.headers, broken)
                data = json.dumps(payload).encode() if payload is not None else b""
                content_type = "application/json; charset=UTF-8"
                if broken == "reset":                    # closed without a word, as a dropped keep-alive
                    self.close_connection = True
                    return
                if broken == "html":
                    content_type, data = "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                if broken == "truncated_json":
                    data = data[: len(data) // 2]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if broken == "empty_body":           # announces the body, sends none, closes
                    data = b""
                if broken == "short_body":           # announces the body, sends half, closes
                    data = data[: len(data) // 2]
                self.close_connection = broken is not None or self.close_connection
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_DELETE(self):
                self._handle("DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls[1], tls[2])
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        # shutdown() waits for the serving loop to look at its flag, up to the poll interval
        # (0.5 s by default: half a second at the end of every test that uses a stand-in)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail(self, method: str, name: str, *statuses: tuple[int, str | None]) -> None:
        """Answer the next calls of `method` on object `name` with these (status, Retry-After)."""
        self.failures.setdefault((method, name), []).extend(statuses)

    def _injected(self, method: str, name: str):
        queue = self.failures.get((method, name))
        if queue:
            status, retry_after = queue.pop(0)
            return status, ({"Retry-After": retry_after} if retry_after else {})
        return None

    def misbehave(self, *kinds: str) -> None:
        """Break the next GETs, one kind each: empty_body, short_body, reset, truncated_json, html,
        inflated_total (Splunk), foreign_next_link (ARM)."""
        self.broken.extend(kinds)

    def drop_writes(self, count: int) -> None:
        self.dropped_writes += count

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]


def headers_ok(server: _Server, headers) -> bool:
    return headers.get("Authorization") == f"Bearer {server.token}"


class FakeSplunk(_Server):
    def __init__(self, tls, token: str, app: str, max_page: int = 4):
        super().__init__(tls, token)
        self.app = app
        self.max_page = max_page
        self.searches: dict[str, dict] = {}          # name -> {"app":…, "content": {…}}

    def handle(self, method, path, query, body, headers, broken=None):
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, {"messages": [{"type": "WARN", "text": "call not properly authenticated"}]}
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        # Splunk takes output_mode from the query string or, on POST, from the form body
        if (form.pop("output_mode", None) or (query.get("output_mode") or [None])[0]) != "json":
            return 400, {}, {"messages": [{"type": "ERROR", "text": "this stand-in only speaks output_mode=json"}]}
        prefix = f"/servicesNS/nobody/{self.app}/saved/searches"
        if not path.startswith(prefix):
            return 404, {}, {"messages": [{"type": "ERROR", "text": f"no handler for {path}"}]}
        name = path[len(prefix):].lstrip("/") or None
        injected = self._injected(method, name or "")
        if injected:
            status, extra = injected
            return status, extra, {"messages": [{"type": "ERROR", "text": f"injected {status}"}]}
        if method == "GET" and name is None:
            entries = [self._entry(n, s) for n, s in sorted(self.searches.items())]
            count, offset = int((query.get("count") or ["30"])[0]), int((query.get("offset") or ["0"])[0])
            per_page = min(count or len(entries), self.max_page)
            page = entries[offset: offset + per_page]
            total = len(entries) + (broken == "inflated_total")     # announces an entry it never sends
            return 200, {}, {"entry": page, "paging": {"total": total, "perPage": per_page, "offset": offset},
                             "messages": []}
        if method == "POST" and name is None:
            new = form.pop("name", None)
            if not new:
                return 400, {}, {"messages": [{"type": "ERROR", "text": "Cannot perform action \"POST\" without a target name"}]}
            if new in self.searches:
                return 409, {}, {"messages": [{"type": "ERROR", "text": f"An object with name={new} already exists"}]}
            self.searches[new] = {"app": self.app, "content": form}
            return 201, {}, {"entry": [self._entry(new, self.searches[new])]}
        if name not in self.searches:
            return 404, {}, {"messages": [{"type": "ERROR", "text": f"Could not find object id={name}"}]}
        if method == "POST":
            if "name" in form:
                return 400, {}, {"messages": [{"type": "ERROR", "text": "Argument \"name\" is not supported by this handler."}]}
            self.searches[name]["content"].update(form)
            return 200, {}, {"entry": [self._entry(name, self.searches[name])]}
        if method == "DELETE":
            del self.searches[name]
            return 200, {}, {"entry": []}
        return 405, {}, {"messages": []}

    def _entry(self, name, search):
        content = {k: (v == "1" if k in SPLUNK_BOOLEANS and v in ("0", "1") else v) for k, v in search["content"].items()}
        content.setdefault("disabled", False)
        return {"name": name, "acl": {"app": search["app"], "owner": "nobody", "sharing": "app"}, "content": content}

    def add_foreign(self, name: str, content: dict, app: str | None = None) -> None:
        """A saved search somebody made by hand (not owned by dac)."""
        self.searches[name] = {"app": app or self.app, "content": dict(content)}


class FakeArm(_Server):
    API = "/providers/Microsoft.SecurityInsights/alertRules"
    SAVED = "/savedSearches"

    def __init__(self, tls, token: str, page_size: int = 2):
        super().__init__(tls, token)
        self.rules: dict[str, dict[str, dict]] = {}  # workspace path -> id -> resource
        self.searches: dict[str, dict[str, dict]] = {}  # workspace path -> id -> saved search
        self.page_size = page_size

    def _saved_searches(self, method, path, query, body):
        """Log Analytics savedSearches (api-version 2020-08-01): the list is one page `{"value": […]}`;
        PUT needs properties.category/displayName/query, answers 200 with a new etag, and refuses an
        etag that is not the current one with 409 ("Newer data exists"); DELETE answers 200."""
        workspace, _, rest = path.partition(self.SAVED)
        search_id = rest.lstrip("/") or None
        injected = self._injected(method, search_id or "")
        if injected:
            status, extra = injected
            return status, extra, {"error": {"code": "Injected", "message": f"injected {status}"}}
        searches = self.searches.setdefault(workspace, {})
        if method == "GET" and search_id is None:
            return 200, {}, {"value": [searches[k] for k in sorted(searches)]}
        if method == "GET":
            return (200, {}, searches[search_id]) if search_id in searches else (404, {}, {"error": {"code": "NotFound", "message": "not found"}})
        if method == "PUT":
            payload = json.loads(body or "{}")
            props = payload.get("properties")
            if not isinstance(props, dict) or not all(isinstance(props.get(k), str) for k in ("category", "displayName", "query")):
                return 400, {}, {"error": {"code": "BadRequest", "message": "properties.category, displayName and query are required"}}
            existing = searches.get(search_id)
            if existing and payload.get("etag") not in (None, "*", existing["etag"]):
                return 409, {}, {"error": {"code": "Conflict", "message": "Newer data exists"}}
            resource = {"id": f"{workspace}{self.SAVED}/{search_id}", "name": search_id,
                        "type": "Microsoft.OperationalInsights/savedSearches",
                        "etag": f"W/\"datetime'{dt.datetime.now(dt.timezone.utc).isoformat()}'\"", "properties": props}
            searches[search_id] = resource
            return 200, {}, resource
        if method == "DELETE":
            searches.pop(search_id, None)
            return 200, {}, None
        return 405, {}, {"error": {"code": "MethodNotAllowed", "message": method}}

    def handle(self, method, path, query, body, headers, broken=None):
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, {"error": {"code": "AuthenticationFailed", "message": "Authentication failed."}}
        if not query.get("api-version"):
            return 400, {}, {"error": {"code": "MissingApiVersionParameter", "message": "The api-version query parameter is required."}}
        if self.SAVED in path and self.API not in path and "/providers/Microsoft.OperationalInsights/workspaces/" in path:
            return self._saved_searches(method, path, query, body)
        if self.API not in path or "/providers/Microsoft.OperationalInsights/workspaces/" not in path:
            return 404, {}, {"error": {"code": "InvalidResourceType", "message": path}}
        workspace, _, rest = path.partition(self.API)
        rule_id = rest.lstrip("/") or None
        injected = self._injected(method, rule_id or "")
        if injected:
            status, extra = injected
            return status, extra, {"error": {"code": "Injected", "message": f"injected {status}"}}
        rules = self.rules.setdefault(workspace, {})
        if method == "GET" and rule_id is None:
            skip = int(query.get("$skipToken", ["0"])[0])
            items = [rules[k] for k in sorted(rules)]
            page = {"value": items[skip: skip + self.page_size]}
            if skip + self.page_size < len(items):
                host = "evil.example" if broken == "foreign_next_link" else f"127.0.0.1:{self.port}"
                page["nextLink"] = (f"https://{host}{path}?api-version={query['api-version'][0]}"
                                    f"&$skipToken={skip + self.page_size}")
            return 200, {}, page
        if method == "GET":
            return (200, {}, rules[rule_id]) if rule_id in rules else (404, {}, {"error": {"code": "NotFound", "message": "not found"}})
        if method == "PUT":
            payload = json.loads(body or "{}")
            if payload.get("kind") != "Scheduled" or not isinstance(payload.get("properties"), dict):
                return 400, {}, {"error": {"code": "BadRequest", "message": "kind Scheduled and properties are required"}}
            existing = rules.get(rule_id)
            if existing and payload.get("etag") and payload["etag"] != existing["etag"]:
                return 409, {}, {"error": {"code": "Conflict", "message": "Newer version of the resource exists (etag mismatch)"}}
            resource = {"id": f"{workspace}{self.API}/{rule_id}", "name": rule_id, "type": "Microsoft.SecurityInsights/alertRules",
                        "kind": "Scheduled", "etag": f'"{uuid.uuid4()}"',
                        "properties": {**payload["properties"], "lastModifiedUtc": dt.datetime.now(dt.timezone.utc).isoformat()}}
            rules[rule_id] = resource
            return (200 if existing else 201), {}, resource
        if method == "DELETE":
            if rule_id not in rules:
                return 204, {}, None
            del rules[rule_id]
            return 200, {}, None
        return 405, {}, {"error": {"code": "MethodNotAllowed", "message": method}}
