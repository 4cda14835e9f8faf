"""PIV protocol layer: pure functions over bytes (SP 800-73-4), no I/O.

Modules, bottom up: ``tlv`` (BER-TLV), ``errors`` (status words → exceptions,
``PivParseError``), ``apdu`` (ISO 7816-4 APDUs, chaining, 61xx/6Cxx),
``fascn``, ``slots`` (Slot, Algorithm), ``objects`` (CHUID, certificates,
Discovery, APT), ``commands`` (APDU builders), ``signing`` (host-side padding),
``session`` (``PivCard`` on a transmit callable), ``schemes`` (signature
schemes). Nothing here imports pyscard, grpc or pkcs11, nor any other hwgated
package: errors are this package's own (``errors``), and the PIV application
layer (``hwgated.pivapp``) turns them into API errors.
"""
