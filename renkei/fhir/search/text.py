"""Text normalisation for string search, so Japanese names match as people expect.

Index values and query values both go through :func:`normalize`, so that
``Patient?name=やまだ`` finds ヤマダ and half-width ﾔﾏﾀﾞ, and ``name=yamada`` finds YAMADA.
"""

from __future__ import annotations

import unicodedata

_KATAKANA_START = 0x30A1  # ァ
_KATAKANA_END = 0x30F6  # ヶ
_KANA_OFFSET = 0x60  # ァ (U+30A1) - ぁ (U+3041)


def katakana_to_hiragana(text: str) -> str:
    """Fold katakana to hiragana; everything else is kept.

    >>> katakana_to_hiragana("ヤマダ ハナコ")
    'やまだ はなこ'
    """
    return "".join(
        chr(ord(ch) - _KANA_OFFSET) if _KATAKANA_START <= ord(ch) <= _KATAKANA_END else ch
        for ch in text
    )


def _strip_latin_accents(text: str) -> str:
    # Only Latin letters lose their marks: a kana's dakuten (゛) is part of the sound
    # (ダ is not タ), so it must survive.
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", text):
        if unicodedata.combining(ch) and out and out[-1].isascii():
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def normalize(text: str) -> str:
    """The folded form used for default (starts-with) and ``:contains`` string search.

    NFKC (half-width kana to full-width, full-width Latin to ASCII), case folding,
    Latin accents removed, katakana folded to hiragana, runs of white space collapsed.

    >>> normalize("ﾔﾏﾀﾞ　ﾊﾅｺ")
    'やまだ はなこ'
    >>> normalize("Ｙａｍａｄａ") == normalize("yamada")
    True
    >>> normalize("José")
    'jose'
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _strip_latin_accents(folded)
    folded = katakana_to_hiragana(folded)
    return " ".join(folded.split())
