"""The Tokens page: make, list and revoke personal access tokens."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from deployments.services import DeployRefused
from deployments.views.common import client_ip

from .models import SCOPES, AccessToken
from .services import access_token_create, access_token_revoke


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: never expires.",
    )
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in SCOPES], widget=forms.CheckboxSelectMultiple, initial=["read"]
    )


def _page(request: HttpRequest, form: TokenForm, secret: str = "", status: int = 200) -> HttpResponse:
    tokens = AccessToken.objects.filter(user=request.user)
    context = {"form": form, "tokens": tokens, "secret": secret}
    return render(request, "api/tokens.html", context, status=status)


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request, TokenForm())
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        _, secret = access_token_create(user=request.user, source_ip=client_ip(request), **form.cleaned_data)
    except DeployRefused as exc:
        form.add_error(None, str(exc))
        return _page(request, form, status=400)
    # Shown in this response only: the database keeps its hash.
    return _page(request, TokenForm(), secret=secret)


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(AccessToken, pk=pk, user=request.user)
    access_token_revoke(user=request.user, token=token, source_ip=client_ip(request))
    messages.info(request, f"Revoked {token.name}.")
    return redirect("tokens")
