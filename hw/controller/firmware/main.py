# Runs at boot on the Pico: the bench controller on USB serial, until the host asks
# for the REPL (mpremote does that by itself: ``impfactory bench flash`` again).
import config
import controller
import usb

controller.Controller(usb.StdioLink(), config.load()).run()
