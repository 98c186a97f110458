"""URLs of the Manage pages, included under /manage/. Edit pages end in /edit/ so that
an environment or repository named "new" cannot collide with the creation page."""

from django.urls import path

from .views import manage

urlpatterns = [
    path("", manage.manage_home, name="manage_home"),
    path("repositories/new/", manage.repository_new, name="manage_repository_new"),
    path("repositories/<slug:name>/edit/", manage.repository_edit, name="manage_repository_edit"),
    path("environments/new/", manage.environment_new, name="manage_environment_new"),
    path("environments/<slug:name>/edit/", manage.environment_edit, name="manage_environment_edit"),
    path(
        "environments/<slug:name>/test-connection",
        manage.environment_test_connection,
        name="manage_environment_test_connection",
    ),
    path("environments/<slug:name>/variables/", manage.variable_set, name="manage_variable_set"),
    path(
        "environments/<slug:name>/variables/<int:pk>/delete",
        manage.variable_delete,
        name="manage_variable_delete",
    ),
    path("environments/<slug:name>/freeze/", manage.freeze_add, name="manage_freeze_add"),
    path(
        "environments/<slug:name>/freeze/<int:pk>/delete", manage.freeze_delete, name="manage_freeze_delete"
    ),
    path("placements/new/", manage.placement_new, name="manage_placement_new"),
    path(
        "placements/<slug:repository>/<slug:environment>/edit/",
        manage.placement_edit,
        name="manage_placement_edit",
    ),
    path(
        "placements/<slug:repository>/<slug:environment>/variables/",
        manage.placement_variable_set,
        name="manage_placement_variable_set",
    ),
    path(
        "placements/<slug:repository>/<slug:environment>/variables/<int:pk>/delete",
        manage.placement_variable_delete,
        name="manage_placement_variable_delete",
    ),
    path("users/", manage.users, name="manage_users"),
    path("users/<int:pk>/roles", manage.user_roles, name="manage_user_roles"),
]
