"""The fixed lists generated profiles draw their names, places and properties from."""

from __future__ import annotations

FIRST_NAMES = (
    "Sarah", "José", "Zoë", "Øyvind", "Saoirse", "Mei", "Ahmed", "Léa", "Jürgen", "Ana",
    "Chidi", "Priya", "Björn", "Łucja", "Kenji", "Amélie", "Mateo", "Fatima", "Noah", "Siobhán",
    "李", "Νίκος", "Дмитрий", "Olivia", "Emeka", "Ines", "Tomás", "Yuki", "Aroha", "Grace",
)  # fmt: skip
LAST_NAMES = (
    "Mason", "García", "Müller", "Ødegaard", "O'Brien", "Nguyễn", "Kowalski", "Dubois", "Silva",
    "Okafor", "Sharma", "Johansson", "Tanaka", "Rossi", "Smith", "Jones", "Papadopoulos", "Ivanova",
    "Brown", "Wiśniewska", "王", "Fernández", "Cohen", "Hughes", "Kim",
)  # fmt: skip
DOMAINS = ("example.com", "example.org", "mail.example.net", "exemple.fr", "beispiel.de")
ORGANIZATIONS = ("Example Corporation", "Acme Ltd", "Globex", "Initech", "Umbrella Coöperative")
TITLES = ("Regional Manager", "Engineer", "Buyer", "Founder", "Designer", "Analyst")
LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP", "pt-BR")
PLANS = ("free", "basic", "pro", "enterprise")
CHANNELS = ("email", "sms", "push")
FREQUENCIES = ("daily", "weekly", "monthly")
COLOURS = ("bleu", "grün", "赤", "verde")
# (city, country, region, zip, timezone, latitude, longitude)
PLACES = (
    ("Boston", "United States", "MA", "02110", "America/New_York", 42.3601, -71.0589),
    ("New York", "United States", "NY", "10017", "America/New_York", 40.7128, -74.006),
    ("London", "United Kingdom", "England", "EC1A 1BB", "Europe/London", 51.5072, -0.1276),
    ("Berlin", "Germany", "Berlin", "10115", "Europe/Berlin", 52.52, 13.405),
    ("São Paulo", "Brazil", "SP", "01000-000", "America/Sao_Paulo", -23.5505, -46.6333),
    ("Tōkyō", "Japan", "Tokyo", "100-0001", "Asia/Tokyo", 35.6762, 139.6503),
    ("Montréal", "Canada", "QC", "H2Y 1C6", "America/Toronto", 45.5019, -73.5674),
    ("Zürich", "Switzerland", "ZH", "8001", "Europe/Zurich", 47.3769, 8.5417),
)
PHONE_PREFIXES = ("+1617", "+1212", "+44770", "+4915", "+5511", "+8190", "+1514", "+4179")
