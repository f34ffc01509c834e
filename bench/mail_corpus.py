"""Realistic test messages for the mail benchmarks, generated deterministically from a seed.

Each message is 5–50 KiB: multipart/alternative (plain + HTML) or multipart/mixed with
one or two attachments (PDF-like binary, CSV, an inline PNG-like part), with non-ASCII
display names and subjects (RFC 2047 encoded-words) and UTF-8 quoted-printable text.
The same (seed, index) always gives the same bytes, so every server gets the same mail.
Messages whose ``index % 100 == NEEDLE_EVERY`` carry the word :data:`NEEDLE` in the
subject (1 % of a mailbox), for SEARCH.
"""

from __future__ import annotations

import datetime as dt
import random
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

NEEDLE = "quarterly"
NEEDLE_EVERY = 7  # index % 100 == 7 carries NEEDLE in its subject

_PEOPLE = [
    ("Zoë Müller", "zoe.mueller"), ("Jürgen Groß", "juergen"), ("Ana Beatriz Conceição", "ana.b"),
    ("Łukasz Wiśniewski", "lukasz"), ("Søren Kierkegård", "soren"), ("Ελένη Παπαδοπούλου", "eleni"),
    ("Дмитрий Иванов", "dmitri"), ("山田 太郎", "taro.yamada"), ("Émilie Dubois", "emilie"),
    ("Pat O'Brien", "pat"), ("Ahmed Al-Farsi", "ahmed"), ("Mary Smith", "mary"),
]
_DOMAINS = ["mail.example", "corp.example", "vereniging.example", "shop.example"]
_SUBJECTS = [
    "Überweisung für {month}", "Réunion de l'équipe — ordre du jour", "Re: Offerte nr. {n}",
    "会議の議事録 {n}", "Встреча в четверг", "Invoice {n} for {month}", "Fwd: photos from the trip",
    "Planning Q{q}: budget en bezetting", "Ταξίδι στην Αθήνα", "Your order #{n} has shipped",
]
_WORDS = ("the a of and to in we will please find attached report meeting budget project "
          "timeline review draft update schedule offerte factuur vergadering Straße café naïve "
          "façade Grüße déjà Zürich Kraków smörgåsbord").split()
_MONTHS = ["januari", "februari", "März", "avril", "May", "juni", "julho", "août"]


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 16)))
        sentence = sentence[0].upper() + sentence[1:] + "."
        words.append(sentence)
        length += len(sentence) + 1
        if rng.random() < 0.2:
            words.append("\n\n")
    return " ".join(words).replace(" \n\n ", "\n\n") + "\n"


MIN_SIZE, MAX_SIZE = 5 * 1024, 50 * 1024


def message(seed: int, index: int, to: str = "bench@localhost") -> bytes:
    """Message number ``index`` of the corpus ``seed`` (CRLF line ends), 5–50 KiB."""
    target = int(MIN_SIZE * (10 ** random.Random(f"{seed}:{index}:size").random()))  # log-uniform: few large
    raw = b""
    for _ in range(8):  # encodings (quoted-printable, base64) make the size hard to hit at once
        raw = _build(seed, index, to, target)
        if MIN_SIZE <= len(raw) <= MAX_SIZE:
            break
        target = int(target * (MAX_SIZE * 0.97 if len(raw) > MAX_SIZE else MIN_SIZE * 1.1) / len(raw))
    return raw


def _build(seed: int, index: int, to: str, target: int) -> bytes:
    rng = random.Random(f"{seed}:{index}")
    name, local = rng.choice(_PEOPLE)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"{name} <{local}@{rng.choice(_DOMAINS)}>"
    msg["To"] = to
    if rng.random() < 0.3:
        other_name, other_local = rng.choice(_PEOPLE)
        msg["Cc"] = f"{other_name} <{other_local}@{rng.choice(_DOMAINS)}>"
    subject = rng.choice(_SUBJECTS).format(n=rng.randint(1000, 99999), month=rng.choice(_MONTHS),
                                           q=rng.randint(1, 4))
    if index % 100 == NEEDLE_EVERY:
        subject += f" ({NEEDLE} figures)"
    msg["Subject"] = f"{subject} [{index}]"
    date = dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=17 * index + rng.randint(0, 16))
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{seed}.{index}.{rng.getrandbits(48):x}@bench.example>"
    if rng.random() < 0.4:
        msg["In-Reply-To"] = f"<{seed}.{max(0, index - rng.randint(1, 50))}.thread@bench.example>"
    msg["X-Mailer"] = rng.choice(["Thunderbird 128.3", "Apple Mail (2.3774)", "Microsoft Outlook 16.0", "mutt 2.2"])

    kind = rng.random()
    text_size = max(1500, int(target * (0.9 if kind < 0.3 else 0.35)))
    body = _text(rng, text_size)
    msg.set_content(body, charset="utf-8", cte="quoted-printable")
    if kind < 0.3:  # plain + HTML only
        html = "<html><body>" + "".join(f"<p>{p}</p>" for p in body.split("\n\n")) + "</body></html>"
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        return msg.as_bytes()
    remaining = max(1024, target - len(body))
    attachments = 2 if kind > 0.8 else 1
    for part in range(attachments):
        raw_size = remaining * 3 // 4 // attachments  # base64 grows by 4/3
        choice = rng.random()
        if choice < 0.5:
            data = b"%PDF-1.7\n" + rng.randbytes(raw_size)
            msg.add_attachment(data, maintype="application", subtype="pdf",
                               filename=f"Rechnung_{index}_{part}_Müller.pdf")
        elif choice < 0.8:
            rows = ["datum;omschrijving;bedrag"] + [
                f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d};{rng.choice(_WORDS)};{rng.randint(1, 9999)},"
                f"{rng.randint(0, 99):02d}" for _ in range(max(1, raw_size // 32))]
            msg.add_attachment("\n".join(rows) + "\n", subtype="csv", charset="utf-8", filename=f"export-{index}.csv")
        else:
            data = b"\x89PNG\r\n\x1a\n" + rng.randbytes(raw_size)
            msg.add_attachment(data, maintype="image", subtype="png", filename=f"foto-{index}.png",
                               disposition="inline")
    return msg.as_bytes()


def message_id(seed: int, index: int) -> str:
    """The Message-ID header value of message ``index`` (for a HEADER search that hits exactly one)."""
    for line in message(seed, index).split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise ValueError("no Message-ID")
