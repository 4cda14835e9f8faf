"""The PIV application on a card connection: the daemon's card logic above the transport.

Layers, one way down: ``hwgated.api`` → this package → ``hwgated.piv`` (pure
protocol) and ``hwgated.pcsc.connection.Connection`` (the only way to the card).
Nothing here imports pyscard or reaches into the reader worker; the transport
never imports this package (the daemon injects :func:`identity.read_identity`
into the card manager).

Modules: ``state`` (what is known of one insertion's PIV application),
``app`` (``PivApp``: SELECT once, track our own traffic), ``cache`` (objects
read once per insertion), ``identity`` (who the card is), ``pin`` (VERIFY with
the last-retry guard), ``sign`` (Sign, Authenticate), ``info`` (GetCardInfo),
``schemes`` (signature schemes with their errors as API errors).
"""
