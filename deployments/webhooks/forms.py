from __future__ import annotations

import re

from django import forms

# fnmatch patterns over git ref names: no spaces, no control characters, no "..".
_PATTERN = re.compile(r"^[A-Za-z0-9._/*?\[\]!+@{}-]+$")


def _patterns(value: str) -> str:
    parts = value.replace(",", " ").split()
    for part in parts:
        if not _PATTERN.match(part) or ".." in part:
            raise forms.ValidationError(f"'{part}' is not a ref pattern (e.g. main, release/*, v*).")
    return " ".join(parts)


class RulesForm(forms.Form):
    branch_patterns = forms.CharField(max_length=500, required=False)
    tag_patterns = forms.CharField(max_length=500, required=False)

    def clean_branch_patterns(self) -> str:
        return _patterns(self.cleaned_data["branch_patterns"])

    def clean_tag_patterns(self) -> str:
        return _patterns(self.cleaned_data["tag_patterns"])
