"""Data that ships with hf_gpt: the short story the book pretrains on (Edith Wharton's "The Verdict", 1908, public
domain), so the book's chapter 5 run works offline."""

from pathlib import Path

THE_VERDICT = Path(__file__).with_name("the-verdict.txt")
