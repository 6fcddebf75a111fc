"""The cloud's use cases, one module each; ``cloud.service.CloudService`` is their facade.

    context.py      what every use case shares: the store, repositories, clock, images,
                    owner lookup, the device link's ``send`` and the agents' events
    products.py     products                    groups.py       device groups
    deployments.py  deployments                 releases.py     impOS releases
    devices.py      finding, naming, claiming   assignment.py   assigning, restarting
    connection.py   hello / state / bye         enrolment.py    BlinkUp tokens, enrolling
    blessing.py     blessing a DUT              logs.py         device logs
    links.py        link keys                   agents.py       agent messages and storage
    webhooks.py     webhooks and their outbox

Rules (``rules.py``) and REST handlers (``api_*.py``) call these (through the facade);
only ``cloud/store`` holds SQL. A use case that is one change runs in one transaction
(``ctx.tx()``), which joins the caller's when there is one.
"""
