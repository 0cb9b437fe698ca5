"""Deploy bundles to a line-side device over SSH: versioned folders, target-side checks, atomic switch.

Public API: `parse_target`, `DeployOptions`, `deploy_bundle`, `rollback`.
"""

from lineside.deploy.flow import deploy_bundle, rollback
from lineside.deploy.options import DeployOptions
from lineside.deploy.ssh import SshTarget, parse_target

__all__ = ["DeployOptions", "SshTarget", "deploy_bundle", "parse_target", "rollback"]
