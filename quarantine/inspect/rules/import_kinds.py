"""Which capabilities one call uses: the names it resolves to, and what its arguments say.

A call is classified by its resolved dotted names (``subprocess.Popen``, ``os.system``,
``urllib.request.urlopen``, aliases already followed) and, for process starts and file
writes, by the text its arguments carry (string literals, and the names and literals they
are built from): ``curl`` in a command fetches, ``bun`` or ``node`` is a JS runtime, a
``.js``/``.sh``/``.ps1``/``.pyz``/binary file is a bundled payload, ``crontab``, shell rc
files, systemd/launchd/autostart units, ``site-packages`` ``.pth`` files and
``sitecustomize`` are persistence, the home directory is outside the package.
"""

import ast
import re
from collections.abc import Callable, Iterable

from quarantine.inspect.rules.import_facts import Capability

Texts = Callable[[ast.AST], list[str]]  # the strings and names an expression is built from
Found = tuple[Capability, str, str | None]  # capability, what, a payload file it names

_PROCESS_PREFIXES = (
    "subprocess.",
    "os.system",
    "os.popen",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.startfile",
    "pty.spawn",
    "commands.getoutput",
    "commands.getstatusoutput",
    "asyncio.create_subprocess_exec",
    "asyncio.create_subprocess_shell",
    "multiprocessing.Process",
)
_NOT_PROCESS = frozenset(
    {
        "subprocess.CalledProcessError",
        "subprocess.TimeoutExpired",
        "subprocess.SubprocessError",
        "subprocess.list2cmdline",
    }
)
_FORKS = frozenset({"os.fork", "os.forkpty", "pty.fork", "os.setsid", "os.daemon"})
_NETWORK = frozenset(
    {
        "socket.socket",
        "socket.create_connection",
        "socket.create_server",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyname_ex",
        "socket.gethostbyaddr",
        "socket.getfqdn",
        "http.client.HTTPConnection",
        "http.client.HTTPSConnection",
        "httplib.HTTPConnection",
        "httplib.HTTPSConnection",
        "urllib.request.urlopen",
        "urllib.request.urlretrieve",
        "urllib.urlopen",
        "urllib.urlretrieve",
        "urllib2.urlopen",
        "urllib3.request",
        "ftplib.FTP",
        "ftplib.FTP_TLS",
        "smtplib.SMTP",
        "smtplib.SMTP_SSL",
        "telnetlib.Telnet",
        "asyncio.open_connection",
        "aiohttp.request",
        "dns.resolver.resolve",
        "dns.resolver.query",
    }
)
# requests and httpx: their request functions, not their exception and option classes.
_HTTP_CLIENTS = ("requests.", "httpx.", "urllib3.PoolManager.")
_HTTP_VERBS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream"}
)
_DYNAMIC_CODE = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "marshal.loads",
        "marshal.load",
        "pickle.loads",
        "pickle.load",
        "cPickle.loads",
        "cPickle.load",
        "dill.loads",
        "types.FunctionType",
        "types.CodeType",
        "runpy.run_path",
        "runpy.run_module",
    }
)
_DYNAMIC_IMPORT = frozenset({"__import__", "importlib.import_module", "importlib.__import__"})
_WRITE_CALLS = frozenset({"shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.move"})
_WRITE_METHODS = frozenset({"write_text", "write_bytes"})
_OPEN_CALLS = frozenset({"open", "io.open", "codecs.open", "os.open"})

_FETCHERS = re.compile(
    r"(?:^|[\s/\\;|&(\"'])(?:curl|wget|Invoke-WebRequest|iwr|Invoke-RestMethod|irm|certutil|bitsadmin)"
    r"(?:\.exe)?(?=$|[\s;|&)\"'])",
    re.IGNORECASE,
)
_JS_RUNTIMES = re.compile(
    r"(?:^|[\s/\\;|&(\"'])(?:node|nodejs|bun|deno)(?:\.exe)?(?=$|[\s;|&)\"'])"
)
_PAYLOAD_FILE = re.compile(
    r"[\w.-]*\.(?:js|mjs|cjs|sh|bash|ps1|bat|cmd|vbs|pyz|exe|bin|elf|run|appimage)\b",
    re.IGNORECASE,
)
_PIPED = re.compile(r"\|\s*(?:sudo\s+)?(?:sh|bash|zsh|python[\d.]*|node|bun|deno|iex)\b")
_DETACHED_WORDS = re.compile(r"\b(?:nohup|setsid|disown|start /b)\b|&\s*$", re.IGNORECASE)
_PERSISTENCE_COMMANDS = re.compile(
    r"\b(?:crontab|systemctl\s+(?:--user\s+)?enable|launchctl\s+(?:load|bootstrap)|schtasks"
    r"|reg(?:\.exe)?\s+add)\b",
    re.IGNORECASE,
)
_PERSISTENCE_PLACES = (
    "crontab",
    "/etc/cron",
    "/var/spool/cron",
    "cron.d",
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".zshrc",
    ".zprofile",
    ".profile",
    "config.fish",
    "systemd",
    ".service",
    "launchagents",
    "launchdaemons",
    "autostart",
    ".desktop",
    "sitecustomize",
    "usercustomize",
    ".pth",
    "site-packages",
    "dist-packages",
    "getsitepackages",
    "getusersitepackages",
    "currentversion\\run",
    "start menu\\programs\\startup",
)
_HOME = ("expanduser", ".home", "USERPROFILE", "APPDATA", "LOCALAPPDATA", "HOME", "~")
_TEMP = ("gettempdir", "mkdtemp", "mkstemp", "/tmp", "TMPDIR", "TEMP")  # noqa: S108  (matched)


def classify(names: set[str], call: ast.Call, texts: Texts) -> list[Found]:
    """The capabilities a call uses; most calls use none, and leave here early."""
    if not any(map(_may_use_capability, names)) and not _writes_by_method(call):
        return []
    found: list[Found] = []
    if any(_is_process(name) for name in names):
        found += _process(min(n for n in names if _is_process(n)), call, texts)
    elif names & _FORKS:
        found.append((Capability.DETACHED, min(names & _FORKS), None))
    elif any(_is_network(name) for name in names):
        found.append((Capability.NETWORK, min(n for n in names if _is_network(n)), None))
    elif names & _DYNAMIC_CODE and _dynamic_input(call):
        what = min(names & _DYNAMIC_CODE)
        if what == "compile" and "PyCF_ONLY_AST" in _words(call, texts):
            return []  # a syntax tree, as ast.parse gives: nothing runs
        found.append((Capability.DYNAMIC_CODE, what, None))
        if what.startswith("runpy."):
            found += _payloads(_words(call, texts))
    elif names & _DYNAMIC_IMPORT and _dynamic_input(call):
        found.append((Capability.DYNAMIC_IMPORT, min(names & _DYNAMIC_IMPORT), None))
    else:
        found += _write(names, call, texts)
    return found


def _may_use_capability(name: str) -> bool:
    """Whether :func:`classify` can find anything in a call by ``name``."""
    return (
        _is_process(name)
        or _is_network(name)
        or name in _FORKS
        or name in _DYNAMIC_CODE
        or name in _DYNAMIC_IMPORT
        or name in _OPEN_CALLS
        or name in _WRITE_CALLS
    )


def _writes_by_method(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr in _WRITE_METHODS


def _is_process(name: str) -> bool:
    return name.startswith(_PROCESS_PREFIXES) and name not in _NOT_PROCESS


def _is_network(name: str) -> bool:
    if name in _NETWORK:
        return True
    return name.startswith(_HTTP_CLIENTS) and name.rsplit(".", 1)[-1] in _HTTP_VERBS


def _dynamic_input(call: ast.Call) -> bool:
    """exec("x = 1") and __import__("json") name what they run; a computed input does not."""
    first = call.args[0] if call.args else None
    return first is None or not (isinstance(first, ast.Constant) and isinstance(first.value, str))


def _words(call: ast.Call, texts: Texts) -> str:
    parts: list[str] = []
    for argument in [*call.args, *(keyword.value for keyword in call.keywords)]:
        parts += texts(argument)
    return " ".join(parts)


def _process(what: str, call: ast.Call, texts: Texts) -> list[Found]:
    words = _words(call, texts)
    found: list[Found] = [(Capability.PROCESS, what, None)]
    fetches = _FETCHERS.search(words) is not None
    if fetches or "://" in words:
        found.append((Capability.NETWORK, f"{_fetcher(words)} (in a command)", None))
    if fetches and _PIPED.search(words):
        found.append((Capability.PAYLOAD, "a downloaded script piped to a shell", None))
    runtime = _JS_RUNTIMES.search(words)
    if runtime:
        found.append((Capability.JS_RUNTIME, runtime.group(0).strip(" /\\;|&(\"'"), None))
    if not fetches:  # what a fetch names is what it writes, not what it runs
        found += _payloads(words)
    if _PERSISTENCE_COMMANDS.search(words):
        command = _PERSISTENCE_COMMANDS.search(words)
        assert command is not None
        found.append((Capability.PERSISTENCE, command.group(0).lower(), None))
    if _detached(call, words):
        found.append((Capability.DETACHED, what, None))
    return found


def _fetcher(words: str) -> str:
    hit = _FETCHERS.search(words)
    return hit.group(0).strip(" /\\;|&(\"'").lower() if hit else "a URL"


def _payloads(words: str) -> list[Found]:
    found: list[Found] = []
    for hit in _PAYLOAD_FILE.finditer(words):
        name = hit.group(0).rsplit("/", 1)[-1]
        if len(found) < 3 and not name.lower().endswith(".py"):
            found.append((Capability.PAYLOAD, name, name))
    return found


def _detached(call: ast.Call, words: str) -> bool:
    for keyword in call.keywords:
        value = keyword.value
        if keyword.arg in ("start_new_session", "daemon") and _truthy(value):
            return True
        if keyword.arg in ("creationflags", "preexec_fn"):
            return True  # DETACHED_PROCESS, CREATE_NEW_PROCESS_GROUP, os.setsid
    return _DETACHED_WORDS.search(words) is not None


def _truthy(node: ast.AST) -> bool:
    return not (isinstance(node, ast.Constant) and not node.value)


def _write(names: set[str], call: ast.Call, texts: Texts) -> list[Found]:
    """A file written where the package does not live: home, a startup hook, temp."""
    target: ast.AST | None = None
    if names & _OPEN_CALLS and _writes(call):
        target = call.args[0] if call.args else None
    elif names & _WRITE_CALLS and len(call.args) >= 2:
        target = call.args[1]
    elif isinstance(call.func, ast.Attribute) and call.func.attr in _WRITE_METHODS:
        target = call.func.value
    if target is None:
        return []
    words = texts(target)
    place = _persistence(words)
    if place is not None:
        return [(Capability.PERSISTENCE, f"write to {place}", None)]
    if _mentions(words, _HOME):
        return [(Capability.WRITE_OUTSIDE, "write to the home directory", None)]
    if _mentions(words, _TEMP):
        return [(Capability.WRITE_TEMP, "write to the temporary directory", None)]
    return []


def _writes(call: ast.Call) -> bool:
    mode: ast.AST | None = call.args[1] if len(call.args) >= 2 else None
    for keyword in call.keywords:
        if keyword.arg in ("mode", "flags"):
            mode = keyword.value
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return any(flag in mode.value for flag in "wax+")
    return mode is not None and not isinstance(mode, ast.Constant)  # os.open flags, computed


def _persistence(words: Iterable[str]) -> str | None:
    for word in words:
        lowered = word.lower()
        for place in _PERSISTENCE_PLACES:
            if place in lowered:
                return place
    return None


def _mentions(words: Iterable[str], marks: tuple[str, ...]) -> bool:
    return any(word.startswith("~") or word.endswith(marks) or word in marks for word in words)
