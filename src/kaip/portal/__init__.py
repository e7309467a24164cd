"""The portal: catalog, resource pages, delivery (DORA) and rollout actions, with their API.

One app (:mod:`~kaip.portal.app`) over one Protocol (:mod:`~kaip.portal.source`), two sources:
``kaip up``'s controller (:mod:`~kaip.portal.local`) and a cluster's custom resources
(:mod:`~kaip.portal.kube`, served by ``kaip portal``). An entrypoint layer: above the
controller and the operator, below the CLI only.
"""
