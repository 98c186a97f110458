from django.urls import path

from . import views

urlpatterns = [
    path("manage/notifications/", views.channel_list, name="notification_channels"),
    path("manage/notifications/new/", views.channel_new, name="notification_channel_new"),
    path("manage/notifications/<int:pk>/", views.channel_detail, name="notification_channel"),
    path("manage/notifications/<int:pk>/edit/", views.channel_edit, name="notification_channel_edit"),
    path("manage/notifications/<int:pk>/delete", views.channel_delete, name="notification_channel_delete"),
    path("manage/notifications/<int:pk>/test", views.channel_test, name="notification_channel_test"),
]
