"""The classroom: one host serves a class — a lab per student (a seat), each in the browser, and a
live view for the teacher (`vnetlab classroom …`).

It sits above the exercise engine (issue 24) and drives it through its command line, one process
per long operation, so a hostile guest or a crashed check never takes the web server down and a
killed server never interrupts a check half-way: the labs and their exercise state live on in the
lab folders, and `classroom resume` picks them up again.

    record     the class on disk: seats, tokens, the server's PID (root-only folder)
    roster     the students' CSV file → seats
    capacity   how many seats the host's memory holds, with the arithmetic
    engine     the exercise engine's commands, as the server runs them
    seats      per seat: boot admission, the queue of Check runs, live versions for the pages
    terminal   a browser terminal on a guest: WebSocket ↔ SSH PTY channel, bounded
    links      the live state of a seat's links (taps and bridge ports in the lab namespace)
    app        the HTTP API and the pages (Starlette)
    server     the server process: uvicorn, TLS, the listen address rules, daemonising
    commands   `vnetlab classroom start|urls|status|stop|reset|resume`
"""
