"""The digest as one reader would get it from an edition made now, for an operator to read
in the admin and to send to themselves as a test.

It goes the way sending goes: the listings of the window planning would use, the reader's
match (listings/matching.py), and mail/digest.py's DigestComposer rendering the variant and
building the message. Only the reader's two links and the web version link differ: a
preview carries PLACEHOLDER instead of a reader's tokens (and the web link names no
variant: it opens nothing), also when it is the preview "as" a real subscriber, so a
preview shown to an operator or mailed to any address they type never holds a link that
would change someone's subscription (STANDARDS 26: a reader's tokens only in their own mail).

A test mail has "[TEST]" before its subject, goes through the one delivery step
(mail/delivery.send) over the normal transport, from the plain bounce address (no VERP
tag: a bounce of it names no reader), and leaves no delivery row and no count behind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.editions import planning
from newsletter.listings import matching
from newsletter.mail import delivery
from newsletter.mail.digest import DigestComposer, SearchExtras, VariantMail, view
from newsletter.mail.transport import SmtpTransport
from newsletter.models import Listing, utcnow
from newsletter.subscribers import subscriptions
from newsletter.validation import InvalidInput, Preferences, clean_email, clean_preferences

PLACEHOLDER = "PREVIEW"
TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class DigestPreview:
    """What one reader would get: the listings shown (at most digest_max_listings) of
    `total` matches, and the mail as text and HTML. `html` and `text` are empty when the
    reader would get no mail (nothing matches: nobody gets an empty digest)."""

    prefs: Preferences
    window_start: datetime
    cutoff: datetime
    listings: list[Listing]
    total: int
    subject: str
    text: str
    html: str
    variant: VariantMail | None

    @property
    def empty(self) -> bool:
        return self.variant is None


def preferences_of(session: Session, email: str) -> Preferences | None:
    """The search (keywords, place, radius, remote, job types) and language of the
    subscriber with this address, or None."""
    try:
        address = clean_email(email)
    except InvalidInput:
        return None
    sub = subscriptions.find_by_email(session, address)
    if sub is None:
        return None
    return Preferences.of(sub)


def preferences(keywords: object, location: object, language: object, radius: object = None,
                remote: object = None, employment_type: object = None) -> Preferences:
    """Preferences typed into the preview form, checked as the signup form checks them
    (the defaults of a field left empty too: 25 km around a place, remote "also")."""
    return clean_preferences({"keywords": keywords, "location": location, "language": language, "radius": radius,
                              "remote": remote, "employment_type": employment_type})


def compose(session: Session, settings: Settings, prefs: Preferences, composer: DigestComposer | None = None,
            now: datetime | None = None) -> DigestPreview:
    """The digest an edition made `now` would send to a reader with `prefs`."""
    now = now or utcnow()
    start = planning.previous_cutoff(session) or now - timedelta(days=settings.digest_interval_days)
    window = planning.window_listings(session, start, now)
    query = matching.parse(prefs.keywords, prefs.location, prefs.radius, prefs.remote, prefs.employment_type)
    selected = matching.select(query, planning.listing_facts(window))  # planning's very rule
    by_id = {item.id: item for item in window}
    shown = [by_id[i] for i in selected[: settings.digest_max_listings]]
    if not shown:
        return DigestPreview(prefs, start, now, [], 0, "", "", "", None)
    composer = composer or DigestComposer(settings)
    tz = settings.tz
    # variant_id None: no edition's variant, so the web link is the placeholder too.
    variant = composer.render_variant(prefs.language, prefs.keywords, prefs.location,
                                      [view(item, tz, prefs.language) for item in shown], len(selected),
                                      now.replace(tzinfo=UTC).astimezone(tz).date(), variant_id=None,
                                      search=SearchExtras(prefs.radius, prefs.remote, prefs.employment_type))
    data, _ = composer.build(variant, "preview@example.invalid", PLACEHOLDER, PLACEHOLDER, "preview")
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    text_part, html_part = message.get_body(("plain",)), message.get_body(("html",))
    return DigestPreview(
        prefs, start, now, shown, len(selected), str(message["Subject"]),
        text_part.get_content() if text_part is not None else "",
        html_part.get_content() if html_part is not None else "", variant,
    )


def send_test(settings: Settings, preview: DigestPreview, to: str, composer: DigestComposer | None = None,
              transport: SmtpTransport | None = None) -> delivery.Outcome:
    """Mail `preview` to `to` (checked as a signup address), subject marked "[TEST]".
    InvalidInput for a bad address or a preview with nothing in it."""
    address = clean_email(to)
    if preview.variant is None:
        raise InvalidInput("to", "to: this reader would get no mail (nothing matches); there is nothing to send")
    composer = composer or DigestComposer(settings)
    # The subject is already encoded (RFC 2047): plain ASCII words may precede encoded-words.
    variant = replace(preview.variant, subject_header=TEST_PREFIX + preview.variant.subject_header)
    feedback_id = f"test:digest:newsletter:{settings.mail_domain}"

    def build(recipient: str, utf8: bool) -> tuple[bytes, str]:
        return composer.build(variant, recipient, PLACEHOLDER, PLACEHOLDER, feedback_id, utf8=utf8)

    own = transport is None
    transport = transport or SmtpTransport(settings)
    try:
        return delivery.send(transport, settings.effective_bounce_address, address, build, what="test mail")
    finally:
        if own:
            transport.close()
