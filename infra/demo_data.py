"""Demo data: 40 listings in 5 cities and 24 users, loaded idempotently (fixed ids, INSERT IGNORE)."""
from __future__ import annotations

from booking_core.adapters.mysql import connect

CITIES = ["Lisbon", "Porto", "Berlin", "Paris", "Rome"]
FIRST = ["Ana", "Bruno", "Carla", "Diogo", "Eva", "Filipe", "Greta", "Hugo", "Ines", "Joao", "Katrin", "Luis"]
KINDS = ["Loft", "Studio", "Flat", "House", "Room", "Penthouse", "Cottage", "Apartment"]

USERS = 24
LISTINGS = 40


def demo_users() -> list[tuple]:
    return [(i, f"user{i}@example.com", f"{FIRST[(i - 1) % len(FIRST)]} {i}") for i in range(1, USERS + 1)]


def demo_listings() -> list[tuple]:
    rows = []
    for i in range(1, LISTINGS + 1):
        city = CITIES[(i - 1) % len(CITIES)]
        kind = KINDS[(i * 3) % len(KINDS)]
        host = ((i * 7) % USERS) + 1
        rows.append((i, host, f"{kind} in {city} #{i}", city, 1 + (i % 6), 4500 + (i * 37 % 20) * 500, "EUR"))
    return rows


def load_demo_data(settings=None) -> dict[str, int]:
    """Insert the demo rows that are missing; return how many users and listings the tables hold."""
    conn = connect(settings, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.executemany("INSERT IGNORE INTO users (id, email, name) VALUES (%s, %s, %s)", demo_users())
            cur.executemany(
                "INSERT IGNORE INTO listings (id, host_id, title, city, max_guests, nightly_price_cents, currency)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)", demo_listings())
            cur.execute("SELECT (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM listings) AS listings")
            return dict(cur.fetchone())
    finally:
        conn.close()
