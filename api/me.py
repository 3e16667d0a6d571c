"""`/api/v1/me`: who the token acts as."""

from __future__ import annotations

from flask_smorest import Blueprint

from accounts import permissions
from api.fields import Boolean, List, Schema, String
from web import policy

blp = Blueprint("api_me", __name__, url_prefix="/api/v1", description="Le compte du jeton")


class Me(Schema):
    email = String(metadata={"description": "identifiant du compte"})
    name = String()
    role = String(metadata={"description": "admin, national ou referent"})
    role_label = String(metadata={"description": "le rôle en français"})
    every_departement = Boolean(metadata={"description": "voit tous les départements"})
    departements = List(String(), metadata={"description": "départements d'un référent"})


@blp.route("/me")
@blp.response(200, Me)
@policy.allow(policy.logged_in)
def me():
    """Le compte au nom duquel agit le jeton, son rôle et ses départements."""
    user = policy.acting_user()
    return {"email": user.email, "name": user.name, "role": user.role.name,
            "role_label": user.role.value,
            "every_departement": permissions.sees_every_departement(user),
            "departements": sorted(user.departement_codes)}
