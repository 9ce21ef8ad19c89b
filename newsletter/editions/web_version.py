"""A digest's web version ("view in the browser"): one edition variant's digest in one
language, as its readers got it, for whoever holds the link the mail carried.

The link names the variant and language only (tokens.digest_web), so the page is the same
for every reader of the variant and holds no reader's data or token: the reader links of
the mail lead to /manage instead (mail/digest.render_web_page). Listings withdrawn since
the edition are left out, as they no longer are on the board.

The link lives as long as the edition is recent: WEB_VERSION_DAYS after its cut-off it
opens nothing any more. The age comes from the edition, not from a time stamp in the
link, so that every worker rendering the variant mails the very same link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.mail.compose import Renderer
from newsletter.mail.digest import SearchExtras, render_web_page, view
from newsletter.models import Edition, EditionVariant, Listing, utcnow

# About three editions of a fortnightly digest: long enough for a reader who keeps the
# mail a while, short enough that old searches do not stay online for good.
WEB_VERSION_DAYS = 90


class NoSuchDigest(LookupError):
    """No variant of that id (never made, or its edition deleted since)."""


class DigestExpired(NoSuchDigest):
    """The variant's edition is older than WEB_VERSION_DAYS."""


@dataclass(frozen=True)
class WebDigest:
    """The web version's page: its HTML and the language it is in."""

    html: str
    language: str


def render(session: Session, renderer: Renderer, variant_id: int, language: str,
           now: datetime | None = None) -> WebDigest:
    """The web version of variant `variant_id` in `language`; NoSuchDigest or
    DigestExpired when there is none to show."""
    found = session.execute(
        select(EditionVariant, Edition.cutoff)
        .join(Edition, Edition.id == EditionVariant.edition_id)
        .where(EditionVariant.id == variant_id)
    ).one_or_none()
    if found is None:
        raise NoSuchDigest(variant_id)
    variant, cutoff = found
    if (now or utcnow()) - cutoff > timedelta(days=WEB_VERSION_DAYS):
        raise DigestExpired(variant_id)
    ids = [i for i in variant.listing_ids if type(i) is int]
    rows = session.scalars(select(Listing).where(Listing.id.in_(ids), Listing.withdrawn_at.is_(None))) if ids else ()
    by_id: dict[int, Listing] = {row.id: row for row in rows}
    tz = renderer.settings.tz
    shown = [view(by_id[i], tz, language) for i in ids if i in by_id]
    # The mail's counts less what is gone: "2 of 5" stays honest, and no "more" button
    # offers the withdrawn ones.
    total = max(variant.total_matches - (len(ids) - len(shown)), len(shown))
    edition_date = cutoff.replace(tzinfo=UTC).astimezone(tz).date()
    html = render_web_page(renderer, language, variant.keywords, variant.location, shown, total, edition_date,
                           SearchExtras(variant.radius, variant.remote, variant.employment_type))
    return WebDigest(html, language)
