"""Accounts, tokens, login keys and collaborator roles of the REST API.

Stored by ``cloud/store/accounts.py`` (tables ``api_accounts``, ``api_tokens``
(SHA-256 digests of the tokens) and ``api_login_keys``).

An owner account owns products and devices; a collaborator account (role
``blinkup_device``) belongs to one owner (``owner_id``) and may only add a fixture
to that owner's account. Tokens are random, stored only as SHA-256 digests, and
outlive impt's 3-minute refresh margin by far (one hour).

Passwords are PBKDF2 (``PBKDF2_ROUNDS``), hashed on a worker thread when a request
waits for one (hashlib releases the GIL), so a login never holds the loop that
serves devices. Password checks are throttled (``LoginThrottle``): each account
(by the login name given, so names that do not exist count too) and each client
address may fail ``ACCOUNT_BURST``/``ADDRESS_BURST`` times, then one more every
``1/ACCOUNT_RATE``/``1/ADDRESS_RATE`` seconds; over that, ``POST /auth`` (and a
login-key route's password) is a 429 with ``Retry-After``, answered before any
hashing. A correct password does not count. Time is the book's injected clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Annotated, Literal

from msgspec import UNSET, Struct, UnsetType

from impfactory.cloud.api import ANY_ROLE, BLINKUP_DEVICE, OWNER, Answer, Call, Router
from impfactory.cloud.api_jsonapi import (
    BadRequest,
    Conflict,
    Forbidden,
    JsonObj,
    NotFound,
    TooManyRequests,
    Unauthorized,
    iso,
    list_query,
    paginate,
    resource,
)
from impfactory.cloud.api_models import NAME, Name, PlainBody, ResourceBody, meta
from impfactory.cloud.model import Account
from impfactory.cloud.ratelimit import Buckets
from impfactory.cloud.store import Store
from impfactory.cloud.store.accounts import AccountRepository
from impfactory.protocol.constraints import Limits

ACCESS_TTL = 3600.0
LOGIN_KEY_BYTES = 8
"""A login key (and its id) is 16 hex characters, as impCentral's; impt's tests read
the first 16 of ``[0-9a-z]`` in its output as the key."""
PBKDF2_ROUNDS = 20_000
ACCOUNT_BURST, ACCOUNT_RATE = 10, 1 / 6
"""Failed password checks one account may have at once, and then a second."""
ADDRESS_BURST, ADDRESS_RATE = 50, 1.0
"""Failed password checks one client address may have at once, and then a second."""


class Login(Struct):
    """``POST /auth``: a username or email and its password."""

    id: str
    password: str


class TokenRequest(Struct, kw_only=True):
    """``POST /auth/token``: a refresh token, or a login key (the token wins when both)."""

    token: str | UnsetType = UNSET
    key: str | UnsetType = UNSET

    def __post_init__(self) -> None:
        if isinstance(self.token, UnsetType) and isinstance(self.key, UnsetType):
            raise ValueError("neither 'token' nor 'key'")


Short = Annotated[str, meta(Limits(max_length=200))]


class LoginKeyAttributes(Struct, forbid_unknown_fields=True):
    description: Short | UnsetType = UNSET


class CollaboratorAttributes(Struct, forbid_unknown_fields=True, kw_only=True):
    """A collaborator account: the only role one can have is ``blinkup_device``."""

    username: Name
    password: Short
    role: Literal["blinkup_device"]
    email: Short | UnsetType = UNSET


LOGIN = PlainBody(Login, "{'id': <username or email>, 'password': <password>}")
TOKEN = PlainBody(TokenRequest, "{'token': <refresh token>} or {'key': <login key>}",
                  extra_schema={"anyOf": [{"required": ["token"]}, {"required": ["key"]}]})
NEW_LOGIN_KEY = ResourceBody.of("LoginKeyCreate", "login_key", LoginKeyAttributes, None,
                                required=False)
LOGIN_KEY = ResourceBody.of("LoginKeyUpdate", "login_key", LoginKeyAttributes, None)
COLLABORATOR = ResourceBody.of("CollaboratorCreate", "account", CollaboratorAttributes, None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ROUNDS)


async def _hash_off_loop(password: str, salt: bytes) -> bytes:
    """``_hash_password`` on the loop's default executor (the loop serves on meanwhile)."""
    return await asyncio.get_running_loop().run_in_executor(None, _hash_password, password,
                                                            salt)


class LoginThrottle:
    """Failed password checks, counted per account and per client address."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.accounts = Buckets(ACCOUNT_RATE, ACCOUNT_BURST, clock)
        self.addresses = Buckets(ADDRESS_RATE, ADDRESS_BURST, clock)

    def admit(self, login: str, address: str) -> None:
        """Count an attempt of ``login`` from ``address``; a 429 when either is over."""
        account, where = login.casefold(), address
        wait = self.accounts.retry_after(account) or self.addresses.retry_after(where)
        if wait:
            raise TooManyRequests(f"too many failed logins; try again in {wait} s", wait,
                                  code="TooManyLogins")
        self.accounts.take(account)
        self.addresses.take(where)

    def passed(self, login: str, address: str) -> None:
        """The attempt was right: it does not count."""
        self.accounts.refund(login.casefold())
        self.addresses.refund(address)


class AccountBook:
    """Accounts and their credentials (stored by ``AccountRepository``)."""

    def __init__(self, store: Store, now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.repo = AccountRepository(store)
        self.now = now
        self.throttle = LoginThrottle(now)

    # -- accounts ------------------------------------------------------------------

    def create(self, username: str, password: str, *, email: str | None = None,
               role: str = OWNER, owner_id: str | None = None,
               hashed: tuple[bytes, bytes] | None = None) -> Account:
        """A new account; a collaborator needs the ``owner_id`` it serves. ``hashed``:
        the password's (salt, hash) when the caller hashed it (``hash_new``)."""
        if not (NAME.matches(username) and NAME.length_ok(len(username))) or not password:
            raise BadRequest("an account needs a username (1-80 characters) and a password")
        if role not in (OWNER, BLINKUP_DEVICE):
            raise BadRequest(f"unknown role {role!r}; roles: {OWNER}, {BLINKUP_DEVICE}")
        if role != OWNER and owner_id is None:
            raise BadRequest("a collaborator account needs the owner it serves")
        if self.find(username) is not None or (email and self.find(email) is not None):
            raise Conflict(f"an account named {username!r} already exists", code="DuplicateName")
        account_id = secrets.token_hex(8)
        if hashed is None:
            salt = secrets.token_bytes(16)
            hashed = (salt, _hash_password(password, salt))
        account = Account(account_id, username, email or f"{username}@impfactory.invalid",
                          role, owner_id or account_id, secrets.token_hex(16),
                          secrets.token_hex(8), self.now())
        with self.store.transaction():
            self.repo.add(account, *hashed)
        return account

    def ensure_owner(self, username: str, password: str) -> Account:
        """The owner ``username``, created on first start (``cloud serve --owner``)."""
        found = self.find(username)
        if found is not None:
            if not self.check_password(found.id, password):
                raise BadRequest(f"account {username!r} exists with another password")
            return found
        return self.create(username, password)

    def get(self, account_id: str) -> Account | None:
        """The account with this id, if any."""
        return self.repo.get(account_id)

    def find(self, login: str) -> Account | None:
        """The account whose username or email is ``login``."""
        return self.repo.find(login)

    def collaborators(self, owner_id: str) -> list[Account]:
        """Accounts serving ``owner_id`` (the owner first)."""
        return self.repo.serving(owner_id)

    def check_password(self, account_id: str, password: str) -> bool:
        """Whether ``password`` is this account's, compared in constant time."""
        found = self.repo.password(account_id)
        return found is not None and hmac.compare_digest(_hash_password(password, found[0]),
                                                         found[1])

    async def hash_new(self, password: str) -> tuple[bytes, bytes]:
        """A fresh salt and ``password``'s hash with it, hashed off the loop."""
        salt = secrets.token_bytes(16)
        return salt, await _hash_off_loop(password, salt)

    async def verify(self, login: str, account: Account | None, password: str,
                     address: str) -> bool:
        """Whether ``password`` is ``account``'s (None: no such account), throttled per
        ``login`` and ``address`` (a 429 when over) and hashed off the loop."""
        self.throttle.admit(login, address)
        if account is None:
            return False
        found = self.repo.password(account.id)
        if found is None:
            return False
        right = hmac.compare_digest(await _hash_off_loop(password, found[0]), found[1])
        if right:
            self.throttle.passed(login, address)
        return right

    def by_plan(self, plan_id: str) -> Account | None:
        """The owner whose developer plan ID is ``plan_id``."""
        return self.repo.by_plan(plan_id)

    # -- tokens --------------------------------------------------------------------

    def issue(self, account: Account, *, refresh: bool) -> JsonObj:
        """A fresh access token (and a refresh token when ``refresh``)."""
        now = self.now()
        access = secrets.token_urlsafe(24)
        out: JsonObj = {"access_token": access, "expires_in": int(ACCESS_TTL),
                        "expires_at": iso(now + ACCESS_TTL)}
        rows: list[tuple[str, str, str, float | None, float]] = [
            (_digest(access), "access", account.id, now + ACCESS_TTL, now)]
        if refresh:
            token = secrets.token_urlsafe(24)
            out["refresh_token"] = token
            rows.append((_digest(token), "refresh", account.id, None, now))
        self.repo.add_tokens(rows, now)
        return out

    def authenticate(self, access_token: str) -> Account:
        """The account an access token belongs to; 401 when unknown or expired."""
        found = self.repo.token(_digest(access_token), "access")
        if found is None or found[1] is None or found[1] < self.now():
            raise Unauthorized("the access token is unknown or expired; refresh it",
                               code="InvalidToken")
        account = self.get(found[0])
        if account is None:
            raise Unauthorized("the token's account no longer exists", code="InvalidToken")
        return account

    def by_refresh_token(self, token: str) -> Account | None:
        """The account a refresh token belongs to."""
        found = self.repo.token(_digest(token), "refresh")
        return self.get(found[0]) if found else None

    def refresh_tokens(self, account: Account) -> list[JsonObj]:
        """The account's refresh tokens, each named by a prefix of its digest."""
        return [resource("refresh_token", d[:16], {"created_at": iso(c)})
                for d, c in self.repo.refresh_tokens(account.id)]

    def revoke_refresh_token(self, account: Account, token_id: str) -> None:
        """Forget one refresh token; 404 when the account has none by that id."""
        if len(token_id) != 16 or not all(c in "0123456789abcdef" for c in token_id):
            raise NotFound(f"no refresh token {token_id!r}")
        if not self.repo.revoke_refresh(account.id, token_id):
            raise NotFound(f"no refresh token {token_id!r}")

    # -- login keys ----------------------------------------------------------------

    def create_login_key(self, account: Account, description: str) -> tuple[str, JsonObj]:
        """A new login key: returns the key (it is the id, 16 hex characters as
        impCentral's, e.g. ``7d8e6670aa285e9d``) and its resource."""
        key = secrets.token_hex(LOGIN_KEY_BYTES)
        with self.store.transaction():
            self.repo.add_login_key(key, account.id, _digest(key), description, self.now())
        return key, self.login_key(account, key)

    def login_key(self, account: Account, key_id: str) -> JsonObj:
        """One login key of ``account`` as a resource; 404 when not its own."""
        row = self.repo.login_key(key_id, account.id)
        if row is None:
            raise NotFound(f"no login key {key_id!r}")
        return resource("login_key", row[0],
                        {"description": row[1], "created_at": iso(row[2])})

    def login_keys(self, account: Account) -> list[JsonObj]:
        """All login keys of ``account``."""
        return [self.login_key(account, key_id) for key_id in self.repo.login_key_ids(account.id)]

    def by_login_key(self, key: str) -> Account | None:
        """The account a login key belongs to."""
        found = self.repo.login_key_owner(_digest(key))
        return self.get(found) if found else None

    def describe_login_key(self, account: Account, key_id: str, description: str) -> None:
        """Change the description of one of ``account``'s keys (404 when not its own)."""
        self.login_key(account, key_id)
        with self.store.transaction():
            self.repo.describe_login_key(key_id, description)

    def delete_login_key(self, account: Account, key_id: str) -> None:
        """Forget one of ``account``'s keys (404 when not its own)."""
        self.login_key(account, key_id)
        with self.store.transaction():
            self.repo.delete_login_key(key_id)


def account_resource(account: Account, viewer: Account) -> JsonObj:
    """An account as ``viewer`` may see it (secrets only for the owner itself)."""
    attrs: JsonObj = {"username": account.username, "email": account.email,
                      "role": account.role, "created_at": iso(account.created_at)}
    if viewer.id == account.id and account.role == OWNER:
        attrs["unbond_key"] = account.unbond_key
        attrs["plan_id"] = account.plan_id
    rels = {"owner": {"type": "account", "id": account.owner_id}}
    return resource("account", account.id, attrs, rels)


def register(router: Router, book: AccountBook) -> None:
    """Add the auth and account routes."""

    async def login(call: Call) -> Answer:
        body: Login = LOGIN.parse(call.body())
        login_id, password = body.id, body.password
        account = book.find(login_id)
        if not await book.verify(login_id, account, password, call.remote) or account is None:
            raise Unauthorized("wrong username or password", code="InvalidCredentials")
        return Answer(200, book.issue(account, refresh=True))

    def token(call: Call) -> Answer:
        body: TokenRequest = TOKEN.parse(call.body())
        if isinstance(body.token, str):
            account = book.by_refresh_token(body.token)
        else:
            assert isinstance(body.key, str)  # the model wants one of them
            account = book.by_login_key(body.key)
        if account is None:
            raise Unauthorized("unknown refresh token or login key", code="InvalidToken")
        issued = book.issue(account, refresh=False)
        return Answer(200, issued)

    def me(call: Call) -> Answer:
        return Answer(200, {"data": account_resource(call.account, call.account)})

    def get_account(call: Call) -> Answer:
        wanted = call.params["id"]
        account = call.account if wanted == "me" else book.get(wanted)
        if account is None or account.owner_id not in (call.account.owner_id, call.account.id):
            raise NotFound(f"no account {wanted!r}")
        return Answer(200, {"data": account_resource(account, call.account)})

    def list_accounts(call: Call) -> Answer:
        accounts = book.collaborators(call.account.owner_id)
        items = [account_resource(a, call.account) for a in accounts]
        return Answer(200, paginate(items, call.query, "/v5/accounts"))

    async def add_collaborator(call: Call) -> Answer:
        attrs = COLLABORATOR.parse(call.body()).attrs
        hashed = await book.hash_new(attrs["password"])
        account = book.create(attrs["username"], attrs["password"], email=attrs.get("email"),
                              role=BLINKUP_DEVICE, owner_id=call.account.id, hashed=hashed)
        return Answer(201, {"data": account_resource(account, call.account)})

    async def _password_checked(call: Call) -> None:
        password = call.header("X-Electricimp-Password")
        if password is None or not await book.verify(call.account.username, call.account,
                                                      password, call.remote):
            raise Forbidden("login keys need the account password in X-Electricimp-Password",
                            code="PasswordRequired")

    def list_keys(call: Call) -> Answer:
        return Answer(200, paginate(book.login_keys(call.account), call.query,
                                    "/v5/accounts/me/login_keys"))

    async def create_key(call: Call) -> Answer:
        await _password_checked(call)
        body = call.body()
        attrs = NEW_LOGIN_KEY.parse(body).attrs if body is not None else {}
        _key, res = book.create_login_key(call.account, attrs.get("description", ""))
        return Answer(201, {"data": res})

    def get_key(call: Call) -> Answer:
        return Answer(200, {"data": book.login_key(call.account, call.params["id"])})

    async def update_key(call: Call) -> Answer:
        await _password_checked(call)
        book.login_key(call.account, call.params["id"])
        attrs = LOGIN_KEY.parse(call.body(), want_id=call.params["id"]).attrs
        if "description" in attrs:
            book.describe_login_key(call.account, call.params["id"], attrs["description"])
        return Answer(200, {"data": book.login_key(call.account, call.params["id"])})

    async def delete_key(call: Call) -> Answer:
        await _password_checked(call)
        book.delete_login_key(call.account, call.params["id"])
        return Answer(204)

    router.add("POST", "/auth", login, "Log in with id and password: access and refresh tokens",
               auth=False, body=LOGIN)
    router.add("POST", "/auth/token", token,
               "A new access token from a refresh token or a login key", auth=False,
               body=TOKEN)
    router.add("GET", "/accounts/me", me, "The caller's account", roles=ANY_ROLE)
    def list_refresh(call: Call) -> Answer:
        return Answer(200, paginate(book.refresh_tokens(call.account), call.query,
                                    "/v5/accounts/me/refresh_tokens"))

    def delete_refresh(call: Call) -> Answer:
        book.revoke_refresh_token(call.account, call.params["id"])
        return Answer(204)

    router.add("GET", "/accounts/me/refresh_tokens", list_refresh,
               "The caller's refresh tokens", roles=ANY_ROLE)
    router.add("DELETE", "/accounts/me/refresh_tokens/{id}", delete_refresh,
               "Revoke a refresh token", roles=ANY_ROLE)
    router.add("GET", "/accounts/me/login_keys", list_keys, "The caller's login keys")
    router.add("POST", "/accounts/me/login_keys", create_key,
               "Create a login key (X-Electricimp-Password)",
               body=NEW_LOGIN_KEY)
    router.add("GET", "/accounts/me/login_keys/{id}", get_key, "One login key")
    router.add("PATCH", "/accounts/me/login_keys/{id}", update_key,
               "Update a login key (X-Electricimp-Password)", body=LOGIN_KEY)
    router.add("DELETE", "/accounts/me/login_keys/{id}", delete_key,
               "Delete a login key (X-Electricimp-Password)")
    router.add("POST", "/accounts/me/collaborators", add_collaborator,
               "Extension: add a collaborator with the blinkup_device role",
               body=COLLABORATOR)
    router.add("GET", "/accounts", list_accounts, "The owner and its collaborators",
               roles=ANY_ROLE, query=list_query())
    router.add("GET", "/accounts/{id}", get_account, "One account of this owner",
               roles=ANY_ROLE)
