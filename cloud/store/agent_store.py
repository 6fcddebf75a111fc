"""What agents keep with ``server.save``: one JSON text per agent."""

from __future__ import annotations

from impfactory.cloud.store.engine import Store


class AgentStoreRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, agent_id: str, data: str, now: float) -> None:
        self.store.execute(
            "INSERT INTO agent_store (agent_id, data, updated_at) VALUES (?,?,?)"
            " ON CONFLICT (agent_id) DO UPDATE SET data=excluded.data,"
            " updated_at=excluded.updated_at", (agent_id, data, now))

    def clear(self, agent_id: str) -> None:
        self.store.execute("DELETE FROM agent_store WHERE agent_id=?", (agent_id,))

    def load(self, agent_id: str) -> str | None:
        found = self.store.scalar("SELECT data FROM agent_store WHERE agent_id=?", (agent_id,))
        return None if found is None else str(found)
