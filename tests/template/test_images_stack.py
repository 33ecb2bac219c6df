"""deploy/images.yaml: the bridge image's repository keeps what a rollback needs and scans what is pushed."""

from __future__ import annotations

import json
from typing import Any

from local.template import load_template
from scripts.bridge_image import IMAGES_TEMPLATE, KEEP_IMAGES


def repository() -> dict[str, Any]:
    resources = load_template(IMAGES_TEMPLATE)["Resources"]
    found: dict[str, Any] = resources["BridgeRepository"]
    assert found["Type"] == "AWS::ECR::Repository"
    return found


def test_pushed_images_are_scanned_and_their_tags_never_move() -> None:
    # Given the repository's properties
    properties = repository()["Properties"]

    # Then every push is scanned, and a tag (a hash of the build context) always means the same bytes
    assert properties["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert properties["ImageTagMutability"] == "IMMUTABLE"


def test_the_lifecycle_keeps_the_last_images_the_script_counts_on() -> None:
    # Given the lifecycle policy with the script's KeepImages filled in (as CloudFormation's !Sub does)
    template = load_template(IMAGES_TEMPLATE)
    text = repository()["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"]["Fn::Sub"]
    keep = template["Parameters"]["KeepImages"]
    policy = json.loads(text.replace("${KeepImages}", str(KEEP_IMAGES)))

    # Then only images beyond the newest KEEP_IMAGES expire, and a rollback always has one to go to
    (rule,) = policy["rules"]
    assert rule["selection"] == {
        "tagStatus": "any",
        "countType": "imageCountMoreThan",
        "countNumber": KEEP_IMAGES,
    }
    assert rule["action"] == {"type": "expire"}
    assert keep["MinValue"] >= 2
    assert keep["Default"] == KEEP_IMAGES


def test_the_outputs_the_deploy_reads_are_declared() -> None:
    # Given the template's outputs
    outputs = load_template(IMAGES_TEMPLATE)["Outputs"]

    # Then the script finds the repository's name and URI there
    assert outputs["RepositoryName"]["Value"] == {"Ref": "BridgeRepository"}
    assert outputs["RepositoryUri"]["Value"] == {"Fn::GetAtt": ["BridgeRepository", "RepositoryUri"]}
