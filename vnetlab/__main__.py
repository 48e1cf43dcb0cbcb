from vnetlab.cli import entry

entry()
