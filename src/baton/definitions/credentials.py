"""Literal credentials under names that say so (a header, an environment variable, a
command-line option) or in the form of a well-known key: a definition is stored, shown and
exported as written, so a secret there would be in the clear (connections and callout steps
refuse them; :mod:`baton.definitions.connection`)."""

from __future__ import annotations

import re

# --- literal credentials under other names (a header, an environment variable, an option) ---
# A name says it holds a credential when one of its words (split at -, _, . and camelCase)
# is one of CREDENTIAL_WORDS, unless the word before makes it a key or token that is no
# secret (Idempotency-Key, X-Cache-Key, page_token: NOT_SECRET_BEFORE) or its last word
# says the value is *about* the credential (TOKEN_URL, KEY_ID, PASSWORD_FILE, AUTH_MODE,
# SESSION_TTL: ABOUT_WORDS). Under such a name a value that is empty, a boolean, a number of
# at most 5 digits, a placeholder (none, disabled) or a file's path (the secret is in the
# file) is not a secret. Whatever the name, a value of the form of a well-known API key or
# token, a private key, or a URL with a password is one (_CREDENTIAL_FORMS).
CREDENTIAL_WORDS = frozenset({
    "key", "keys", "apikey", "accesskey", "secretkey", "privatekey", "token", "apitoken",
    "accesstoken", "authtoken", "secret", "secrets", "apisecret", "clientsecret", "password",
    "passwords", "passwd", "pwd", "pass", "passphrase", "credential", "credentials", "creds",
    "signature", "session", "sessionid", "auth", "authorization", "cookie", "bearer", "jwt"})
NOT_SECRET_BEFORE = {
    "key": frozenset({"idempotency", "idempotent", "dedup", "dedupe", "deduplication", "cache",
                      "partition", "sort", "routing", "primary", "foreign", "public",
                      "publishable", "lookup", "hash", "shard", "request", "trace",
                      "correlation", "event", "message", "object", "ordering"}),
    "token": frozenset({"next", "page", "pagination", "continuation", "cursor", "sync",
                        "resume"}),
}
ABOUT_WORDS = frozenset({
    "id", "ids", "name", "names", "file", "path", "dir", "url", "uri", "endpoint", "host",
    "port", "type", "kind", "mode", "scheme", "method", "header", "param", "field",
    "location", "ttl", "timeout", "expiry", "expires", "lifetime", "duration", "length",
    "size", "limit", "count", "version", "format", "algorithm", "alg", "enabled", "disabled",
    "required", "user", "username", "email", "login", "account", "tenant", "realm",
    "provider", "region", "scope", "scopes", "audience", "issuer", "prefix"})
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_PLAIN = frozenset({"", "true", "false", "yes", "no", "on", "off", "none", "null", "disabled",
                    "enabled", "optional", "required"})
SMALL_NUMBER = re.compile(r"[-+]?\d{1,5}(\.\d+)?\Z")
_PATH = re.compile(r"(~|\.{1,2})?/?([\w.-]+/)*[\w.-]+\.(pem|key|crt|cer|der|p8|p12|pfx|jks"
                   r"|json|toml|ya?ml|txt|env|ini|conf|cfg|py|js|mjs|ts|sh)\Z")
_CREDENTIAL_FORMS = re.compile(  # (bounded or possessive: linear on a hostile value)
    r"sk-[\w-]{20}|[sr]k_(live|test)_\w{10}|gh[pousr]_\w{30}|github_pat_\w{20}"
    r"|glpat-[\w-]{20}|xox[abprs]-[\w-]{10}|AKIA[0-9A-Z]{16}|AIza[\w-]{35}"
    r"|eyJ[\w-]{8,300}+\.eyJ[\w-]{8}|-----BEGIN [A-Z ]{0,40}PRIVATE KEY"
    r"|[A-Za-z][\w+.-]{0,30}://[^/\s:@]*+:[^/\s@]++@")


def credential_name(name: str) -> bool:
    """Whether a header, environment variable or option called ``name`` holds a credential
    (the rule above): ``X-Api-Key``, ``OPENAI_API_KEY``, ``--token``; not
    ``X-Idempotency-Key``, ``TOKEN_URL`` or ``MAX_TOKENS``."""
    words = [w.lower() for w in _WORDS.findall(name)]
    named = [w for w in words if not w.isdigit()]
    if not named or named[-1] in ABOUT_WORDS:
        return False
    return any(w in CREDENTIAL_WORDS
               and (i == 0 or words[i - 1] not in NOT_SECRET_BEFORE.get(w, ()))
               for i, w in enumerate(words))


def literal_credential(name: str, value: object) -> str | None:
    """Why ``value``, written as it is under ``name`` ("": no name), is a secret in the
    clear, or None. The reason never repeats the value."""
    text = str(value).strip()
    if name and credential_name(name) and text.lower() not in _PLAIN \
            and not SMALL_NUMBER.match(text) and not _PATH.match(text):
        return f"{name} names a credential"
    if _CREDENTIAL_FORMS.search(text):
        return ("the value has the form of a credential (an API key or token, a private key, "
                "or a URL with a password)")
    return None
