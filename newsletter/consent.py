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

CURRENT_VERSION = "2026-11-01"
LANGUAGES = ("de", "en")


def consent_text(language: str, version: str = CURRENT_VERSION) -> str:
    """The wording of `version` in `language` (German when the language is unknown)."""
    texts = CONSENT_TEXTS[version]
    return texts.get(language, texts["de"])
