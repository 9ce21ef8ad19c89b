"""The consent wording shown on the signup form, versioned so that each consent event records
exactly the text the person agreed to. Never edit a published version: add a new one."""

from __future__ import annotations

CONSENT_TEXTS: dict[str, dict[str, str]] = {
    "2026-11-01": {
        "de": (
            "Ja, ich möchte den Jobs-Newsletter alle 14 Tage per E-Mail erhalten: neue "
            "Stellenangebote passend zu meinen Suchbegriffen und meinem Ort. Keine Werbung. "
            "Meine Einwilligung kann ich jederzeit über den Abmeldelink in jeder E-Mail "
            "widerrufen. Details in der Datenschutzerklärung."
        ),
        "en": (
            "Yes, I would like to receive the jobs newsletter by email every 14 days: new job "
            "listings matching my keywords and location. No advertising. I can withdraw my "
            "consent at any time through the unsubscribe link in every email. Details in the "
            "privacy notice."
        ),
    },
}

# From this version on the wording names the list and its interval as configured: what a
# reader agrees to is what they will get (NEWSLETTER_LIST_NAME, _DIGEST_INTERVAL_DAYS).
CONSENT_TEXTS["2026-11-27"] = {
    "de": (
        "Ja, ich möchte den {list_name} {every} per E-Mail erhalten: neue Stellenangebote "
        "passend zu meinen Suchbegriffen und meinem Ort. Keine Werbung. Meine Einwilligung "
        "kann ich jederzeit über den Abmeldelink in jeder E-Mail widerrufen. Details in der "
        "Datenschutzerklärung."
    ),
    "en": (
        "Yes, I would like to receive the {list_name} by email {every}: new job listings "
        "matching my keywords and location. No advertising. I can withdraw my consent at any "
        "time through the unsubscribe link in every email. Details in the privacy notice."
    ),
}

CURRENT_VERSION = "2026-11-27"
LANGUAGES = ("de", "en")
LIST_NAME = "Jobs-Newsletter"  # config.Settings' default, for callers without settings
INTERVAL_DAYS = 14


def every(language: str, days: int) -> str:
    """How often, as the texts say it: "alle 14 Tage", "jede Woche", "every 14 days"."""
    if language == "en":
        return {1: "every day", 7: "every week"}.get(days, f"every {days} days")
    return {1: "jeden Tag", 7: "jede Woche"}.get(days, f"alle {days} Tage")


def consent_text(
    language: str, version: str = CURRENT_VERSION, *, list_name: str = LIST_NAME, interval_days: int = INTERVAL_DAYS
) -> str:
    """The wording of `version` in `language` (German when the language is unknown), with
    the list's name and interval filled in."""
    texts = CONSENT_TEXTS[version]
    lang = language if language in texts else "de"
    return texts[lang].format(list_name=list_name, every=every(lang, interval_days))
