"""Alembic migration scripts of the service's SQL schema (shipped inside the package).

``backpain_cds.schema`` runs them through Alembic's API (``backpain-cds migrate``, ``serve``);
``alembic.ini`` at the repository root points the ``alembic`` command here for writing new
revisions (README "Database and migrations").
"""
