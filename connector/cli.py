"""The `ml-connector` command line (placeholder until the service lands)."""

import click


@click.group()
def main() -> None:
    """ml-connector: Dynamics 365 F&O business events and approvals in Microsoft Teams."""
