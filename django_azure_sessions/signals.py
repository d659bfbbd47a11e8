"""Signals of django-azure-sessions.

``session_revoked`` is sent after sessions were ended early, by every path that does so:

- ``sender``: the storage class of the engine;
- ``user_id``: the id the sessions were signed in as (a string), or None;
- ``stored_ids``: the stored ids (never the keys) of the sessions ended;
- ``reason``: ``"admin"`` (revoked in the admin) or ``"sign_out_everywhere"``; more reasons
  come with the features that end sessions on their own.

For example, to tell the user by e-mail::

    from django.dispatch import receiver
    from django_azure_sessions.signals import session_revoked

    @receiver(session_revoked)
    def tell_the_user(sender, user_id, stored_ids, reason, **kwargs):
        if user_id is not None and reason == "admin":
            user = User.objects.get(pk=user_id)
            user.email_user("You were signed out", "An administrator ended your sessions.")
"""

from __future__ import annotations

from django.dispatch import Signal

session_revoked = Signal()
