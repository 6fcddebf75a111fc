"""``impfactory test``: Electric Imp's impUnit tests (``impt test run``) on emulated imps.

A library or product keeps its tests the way Electric Imp's tools want them:
``*.device.test.nut`` / ``*.agent.test.nut`` files of ``ImpTestCase`` classes and
a ``.impt.test`` configuration. impt builds each test file into a deployment and
runs it on the real devices of a device group; this package builds it the same
way and runs it on a fresh emulated imp whose board carries virtual peripherals
(the impExplorer Kit's HTS221 by default), on a virtual clock::

    config        .impt.test, finding test files and partners, --tests selection
    build         framework + device/agent file + test file, as impt joins them
    promise.nut   the Promise the tests rely on (Electric Imp's Promise API)
    impunit.nut   ImpTestCase and its assertions (impUnit's API and messages)
    device_target an emulated imp on a board, running one side of a build
    agent_target  the agent side: a stand-in agent VM until the cloud's agent
                  runtime is handed to the session (``agent_factory``)
    session       one test file: setUp, tests, tearDown; values, promises, timeouts
    runner        every test file in turn; stopOnFail
    results       what ran, passed and failed (JSON)
    report_text   impt's output; report_junit: JUnit XML

The Squirrel parts (``promise.nut``, ``impunit.nut``) are written for impfactory;
Electric Imp's impUnit and Promise libraries (MIT) are the reference for their
behaviour and messages, not their source.
"""
