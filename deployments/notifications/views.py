"""Manage → Notifications: admins only (403 for anyone else), every change a POST."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ..services.deployments import DeployRefused
from ..views.common import client_ip, partial
from ..views.manage import admin_required
from . import services
from .forms import ChannelForm
from .models import Attempt, Channel, Delivery

RECENT = 20


@admin_required
def channel_list(request: HttpRequest) -> HttpResponse:
    channels = Channel.objects.prefetch_related(
        "subscriptions__environment",
        "subscriptions__placement__repository",
        "subscriptions__placement__environment",
    )
    return render(request, "notifications/list.html", {"channels": channels})


def _detail(request: HttpRequest, channel: Channel, secret: str = "") -> HttpResponse:
    deliveries = (
        Delivery.objects.filter(channel=channel)
        .select_related("deployment")
        .prefetch_related(Prefetch("attempt_set", Attempt.objects.order_by("number")))[:RECENT]
    )
    context = {"channel": channel, "deliveries": deliveries, "secret": secret}
    return render(request, partial(request, "notifications/channel.html", "deliveries"), context)


@admin_required
def channel_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail(request, get_object_or_404(Channel, pk=pk))


def _form_page(request: HttpRequest, channel: Channel | None) -> HttpResponse:
    form = ChannelForm(request.POST if request.method == "POST" else None, instance=channel)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        scopes = {"environments": data["environments"], "placements": data["placements"]}
        try:
            if channel is None:
                saved, secret = services.channel_create(
                    user=request.user, channel=form.save(commit=False), secret=data["secret"],
                    source_ip=client_ip(request), **scopes,
                )  # fmt: skip
            else:
                saved, secret = services.channel_update(
                    user=request.user, channel=form.save(commit=False), changed=form.changed_data,
                    secret=data["secret"], regenerate=data.get("regenerate", False),
                    source_ip=client_ip(request), **scopes,
                )  # fmt: skip
        except (DeployRefused, ValidationError) as exc:
            form.add_error(None, str(exc.messages[0] if isinstance(exc, ValidationError) else exc))
        else:
            messages.success(request, f"Channel {saved.name} saved.")
            # Rendered, not redirected, when there is a new secret: it is shown this once.
            return _detail(request, saved, secret) if secret else redirect("notification_channel", saved.pk)
    context = {"form": form, "channel": channel}
    return render(request, "notifications/form.html", context, status=400 if form.errors else 200)


@admin_required
def channel_new(request: HttpRequest) -> HttpResponse:
    return _form_page(request, None)


@admin_required
def channel_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _form_page(request, get_object_or_404(Channel, pk=pk))


@admin_required
@require_POST
def channel_delete(request: HttpRequest, pk: int) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=pk)
    services.channel_delete(user=request.user, channel=channel, source_ip=client_ip(request))
    messages.success(request, f"Channel {channel.name} deleted.")
    return redirect("notification_channels")


@admin_required
@require_POST
def channel_test(request: HttpRequest, pk: int) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=pk)
    try:
        services.channel_send_test(user=request.user, channel=channel, source_ip=client_ip(request))
    except DeployRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Test notification queued; its attempts appear below.")
    return redirect("notification_channel", channel.pk)
