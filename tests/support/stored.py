"""Everything a vault database holds, as bytes, to prove that no plaintext secret was ever written to it."""

from __future__ import annotations

from sqlalchemy import Engine, MetaData, select

from server.settings import Settings


def database_contents(settings: Settings, engine: Engine) -> bytes:
    """SQLite: the database file with its WAL and journal, byte for byte (deleted pages included).
    Any database: every value of every row, binary columns raw and as hex, everything else as text."""
    chunks: list[bytes] = []
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        engine.dispose()  # flush the WAL into the file
        path = settings.home / "grantkeeper.db" if settings.database_url is None else None
        if path is not None:
            chunks += [p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))]
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for value in row:
                    if isinstance(value, (bytes, bytearray, memoryview)):
                        chunks += [bytes(value), bytes(value).hex().encode()]
                    else:
                        chunks.append(str(value).encode())
    return b"\n".join(chunks)


def assert_no_plaintext(contents: bytes, secrets: list[str]) -> None:
    assert contents, "read nothing from the database"
    for secret in secrets:
        assert secret.encode() not in contents, "a secret is stored in the clear"
        assert secret.encode().hex().encode() not in contents, "a secret is stored hex-encoded"
