"""Who may do what: owners, enrolment tokens, and the REST API's accounts with their
access tokens and login keys (stored only as SHA-256 digests)."""

from __future__ import annotations

from impfactory.cloud.model import Account, Owner, Token, TokenKind
from impfactory.cloud.store.engine import Store

ACCOUNT_COLUMNS = "id, username, email, role, owner_id, unbond_key, plan_id, created_at"


class OwnerRepository:
    """The cloud's own owner directory (runs without the REST API's accounts)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, owner_id: str) -> Owner | None:
        row = self.store.one("SELECT id, plan_id, unbond_key FROM owners WHERE id=?",
                             (owner_id,))
        return Owner(row[0], row[1], row[2]) if row is not None else None

    def add(self, owner: Owner) -> None:
        self.store.execute("INSERT INTO owners (id, plan_id, unbond_key) VALUES (?,?,?)",
                           (owner.id, owner.plan_id, owner.unbond_key))


class TokenRepository:
    """Enrolment tokens (what BlinkUp carries)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, t: Token) -> None:
        self.store.execute(
            "INSERT INTO tokens (token, kind, plan_id, owner_id, fixture_id, expires_at,"
            " created_at) VALUES (?,?,?,?,?,?,?)",
            (t.token, t.kind.value, t.plan_id, t.owner_id, t.fixture_id, t.expires_at,
             t.created_at))

    def get(self, token: str) -> Token | None:
        row = self.store.one("SELECT * FROM tokens WHERE token=?", (token,))
        return Token.from_row(row) if row is not None else None

    def used(self, token: str, device_id: str, now: float) -> None:
        self.store.execute("UPDATE tokens SET used_at=?, used_by=? WHERE token=?",
                           (now, device_id, token))

    def count(self, kind: TokenKind) -> int:
        return int(self.store.scalar("SELECT COUNT(*) FROM tokens WHERE kind=?", (kind.value,)))


class AccountRepository:
    """The REST API's accounts, access/refresh tokens and login keys."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- accounts -------------------------------------------------------------------

    def add(self, account: Account, pw_salt: bytes, pw_hash: bytes) -> None:
        a = account
        self.store.execute(
            "INSERT INTO api_accounts (id, username, email, pw_salt, pw_hash, role, owner_id,"
            " unbond_key, plan_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (a.id, a.username, a.email, pw_salt, pw_hash, a.role, a.owner_id, a.unbond_key,
             a.plan_id, a.created_at))

    def get(self, account_id: str) -> Account | None:
        row = self.store.one(f"SELECT {ACCOUNT_COLUMNS} FROM api_accounts WHERE id=?",
                             (account_id,))
        return Account(*row) if row is not None else None

    def _by(self, column: str, value: str) -> Account | None:
        row = self.store.one(f"SELECT {ACCOUNT_COLUMNS} FROM api_accounts WHERE {column}=?",
                             (value,))
        return Account(*row) if row is not None else None

    def find(self, login: str) -> Account | None:
        """By username or email."""
        return self._by("username", login) or self._by("email", login)

    def by_plan(self, plan_id: str) -> Account | None:
        return self._by("plan_id", plan_id)

    def serving(self, owner_id: str) -> list[Account]:
        """Accounts whose owner is ``owner_id``, the owner first, then by age."""
        rows = self.store.query(
            f"SELECT {ACCOUNT_COLUMNS} FROM api_accounts WHERE owner_id=?"
            " ORDER BY CASE WHEN id=owner_id THEN 0 ELSE 1 END, created_at", (owner_id,))
        return [Account(*r) for r in rows]

    def password(self, account_id: str) -> tuple[bytes, bytes] | None:
        """(salt, PBKDF2 hash) of the account's password."""
        row = self.store.one("SELECT pw_salt, pw_hash FROM api_accounts WHERE id=?",
                             (account_id,))
        return (bytes(row[0]), bytes(row[1])) if row is not None else None

    # -- access and refresh tokens --------------------------------------------------

    def add_tokens(self, rows: list[tuple[str, str, str, float | None, float]], now: float
                   ) -> None:
        """New (digest, kind, account_id, expires_at, created_at) rows; expired access
        tokens go in the same transaction."""
        with self.store.transaction():
            self.store.execute("DELETE FROM api_tokens WHERE kind='access' AND expires_at<?",
                               (now,))
            for row in rows:
                self.store.execute("INSERT INTO api_tokens (digest, kind, account_id,"
                                   " expires_at, created_at) VALUES (?,?,?,?,?)", row)

    def token(self, digest: str, kind: str) -> tuple[str, float | None] | None:
        """(account_id, expires_at) of a token by digest and kind."""
        row = self.store.one("SELECT account_id, expires_at FROM api_tokens WHERE digest=?"
                             " AND kind=?", (digest, kind))
        return (row[0], row[1]) if row is not None else None

    def refresh_tokens(self, account_id: str) -> list[tuple[str, float]]:
        """(digest, created_at) of the account's refresh tokens, oldest first."""
        rows = self.store.query("SELECT digest, created_at FROM api_tokens WHERE account_id=?"
                                " AND kind='refresh' ORDER BY created_at", (account_id,))
        return [(r[0], r[1]) for r in rows]

    def revoke_refresh(self, account_id: str, digest_prefix: str) -> bool:
        """Forget the refresh token whose digest starts with ``digest_prefix`` (16 hex)."""
        with self.store.transaction():
            return self.store.execute(
                "DELETE FROM api_tokens WHERE account_id=? AND kind='refresh'"
                " AND substr(digest, 1, 16)=?", (account_id, digest_prefix)) > 0

    # -- login keys -----------------------------------------------------------------

    def add_login_key(self, key_id: str, account_id: str, digest: str, description: str,
                      now: float) -> None:
        self.store.execute("INSERT INTO api_login_keys (id, account_id, digest, description,"
                           " created_at) VALUES (?,?,?,?,?)",
                           (key_id, account_id, digest, description, now))

    def login_key(self, key_id: str, account_id: str) -> tuple[str, str, float] | None:
        """(id, description, created_at) of one of the account's keys."""
        row = self.store.one("SELECT id, description, created_at FROM api_login_keys"
                             " WHERE id=? AND account_id=?", (key_id, account_id))
        return (row[0], row[1], row[2]) if row is not None else None

    def login_key_ids(self, account_id: str) -> list[str]:
        rows = self.store.query("SELECT id FROM api_login_keys WHERE account_id=?"
                                " ORDER BY created_at", (account_id,))
        return [r[0] for r in rows]

    def login_key_owner(self, digest: str) -> str | None:
        found = self.store.scalar("SELECT account_id FROM api_login_keys WHERE digest=?",
                                  (digest,))
        return None if found is None else str(found)

    def describe_login_key(self, key_id: str, description: str) -> None:
        self.store.execute("UPDATE api_login_keys SET description=? WHERE id=?",
                           (description, key_id))

    def delete_login_key(self, key_id: str) -> None:
        self.store.execute("DELETE FROM api_login_keys WHERE id=?", (key_id,))
